"""The paper's ablations as presets: each builds, trains with falling loss and reports Dice."""

import pytest
import torch

from llamareg.config import load_config
from llamareg.data.factory import build_pair_datasets
from llamareg.llm import load_llama_layers
from llamareg.networks.frozen_llm import FrozenLLM
from llamareg.models import build_model
from llamareg.networks.lora import add_lora
from llamareg.training.checkpoint import trainable_state
from llamareg.training.objective import MultiScaleObjective
from llamareg.training.precision import Precision
from llamareg.training.validation import evaluate

SMALL = [
    "data.shape=[32, 32, 32]",
    "data.num_train_subjects=2",
    "data.num_val_subjects=2",
    "data.num_val_pairs=1",
    "model.base_channels=4",
    "train.max_iters=8",
]
ABLATIONS = ["cpu-random-llm", "cpu-random-llm-trained", "cpu-vit", "cpu-posemb", "cpu-inner-x4", "cpu-lora", "cpu-two-layers"]


def train_briefly(model, pair, steps=8, lr=1e-3):
    objective = MultiScaleObjective("mse", 0.02)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    moving, fixed = pair["moving"][None], pair["fixed"][None]
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss, _ = objective(moving, fixed, model(moving, fixed)["flows"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def small_pairs():
    return build_pair_datasets(load_config("cpu-default", SMALL))


@pytest.mark.parametrize("preset", ABLATIONS)
def test_ablation_preset_trains_and_reports_dice(preset, small_pairs):
    torch.manual_seed(0)
    config = load_config(preset, SMALL)
    model = build_model(config)
    train_pairs, val_pairs = small_pairs
    losses = train_briefly(model, train_pairs[0])
    assert losses[-1] < losses[0]
    result = evaluate(model, torch.utils.data.DataLoader(val_pairs), torch.device("cpu"), Precision.resolve("fp32", torch.device("cpu")))
    assert 0.0 < result["dice"] <= 1.0 and result["pairs"] == 1


def test_ablation_presets_change_what_they_name():
    base = build_model(load_config("cpu-default", SMALL))
    assert base.steps[0].pathway.positional is None
    assert build_model(load_config("cpu-posemb", SMALL)).steps[0].pathway.positional is not None
    assert build_model(load_config("cpu-inner-x4", SMALL)).steps[0].pathway.inner_adapters[0][0].out_features == 4 * 576
    two = build_model(load_config("cpu-two-layers", SMALL))
    assert len(two.llm.layers) == 2 and two.llm.fingerprint != base.llm.fingerprint
    random = build_model(load_config("cpu-random-llm", SMALL))
    assert random.llm.source == "random:smollm2-135m"
    vit = build_model(load_config("cpu-vit", SMALL))
    assert vit.llm.hidden_size == 576 and all(p.requires_grad for p in vit.llm.parameters())
    assert any(key.startswith("llm.blocks.") for key in trainable_state(vit))  # ViT weights are saved


def test_lora_trains_only_lora_weights_yet_changes_the_llm_block(small_pairs):
    torch.manual_seed(0)
    model = build_model(load_config("cpu-lora", SMALL))
    trainable_llm = [name for name, p in model.llm.named_parameters() if p.requires_grad]
    assert trainable_llm and all("lora_A" in name or "lora_B" in name for name in trainable_llm)
    base = {name: p.detach().clone() for name, p in model.llm.named_parameters() if not p.requires_grad}
    tokens = torch.randn(1, 8, 576)
    with torch.no_grad():
        before = model.llm.call(0, tokens)
    train_briefly(model, small_pairs[0][0], steps=4)
    after_params = dict(model.llm.named_parameters())
    assert all(torch.equal(value, after_params[name]) for name, value in base.items())
    with torch.no_grad():
        after = model.llm.call(0, tokens)
    assert not torch.allclose(before, after)
    saved = trainable_state(model)
    assert any("lora_B" in key for key in saved)
    assert not any(f"llm.{name}" in saved for name in base)  # frozen pretrained weights are not copied


def test_trainable_llm_layers_train_and_are_saved(small_pairs):
    torch.manual_seed(0)
    model = build_model(load_config("cpu-random-llm-trained", SMALL))
    frozen = build_model(load_config("cpu-random-llm", SMALL))
    assert all(p.requires_grad for p in model.llm.parameters())
    assert not any(p.requires_grad for p in frozen.llm.parameters())
    before = {name: p.detach().clone() for name, p in model.llm.named_parameters()}
    train_briefly(model, small_pairs[0][0], steps=2)
    changed = [name for name, p in model.llm.named_parameters() if not torch.equal(p, before[name])]
    assert "layers.0.self_attn.q_proj.weight" in changed and "layers.0.mlp.down_proj.weight" in changed
    saved = trainable_state(model)
    assert torch.equal(saved["llm.layers.0.mlp.down_proj.weight"], model.llm.layers[0].mlp.down_proj.weight)
    assert not any(key.startswith("llm.") for key in trainable_state(frozen))  # frozen layers are reloaded, not saved


@pytest.mark.parametrize("override", ["llm.dtype=bfloat16", "llm.lora_rank=4"])
def test_trainable_llm_refuses_16_bit_weights_and_lora(override):
    with pytest.raises(ValueError, match="llm.trainable=true needs llm.dtype=float32"):
        load_config("cpu-random-llm-trained", [override])


def test_lora_dropout_is_active_in_training_only():
    loaded = load_llama_layers("random:smollm2-135m", [-1])
    llm = add_lora(FrozenLLM(loaded.layers, loaded.final_norm, 1), 4, 8.0, 0.5, ["q_proj", "v_proj"])
    for name, parameter in llm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)  # a LoRA branch that contributes
    tokens = torch.randn(1, 6, llm.hidden_size)
    llm.train()
    assert not llm.layers[0].training  # the pretrained layers stay in inference mode
    torch.manual_seed(0)
    first = llm.call(0, tokens)
    torch.manual_seed(1)
    assert not torch.allclose(first, llm.call(0, tokens))  # dropout draws differ: it is on
    llm.eval()
    assert torch.equal(llm.call(0, tokens), llm.call(0, tokens))  # and off in evaluation
