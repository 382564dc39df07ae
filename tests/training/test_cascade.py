"""Cascaded LLaMA-Reg: frozen steps stay frozen, schedules write per-step results, checkpoints reload
and give the same flows."""

import json
import sys

import pytest
import torch

from llamareg.commands.train import run
from llamareg.data.factory import build_pair_datasets
from llamareg.models import build_model
from llamareg.inference.model_io import load_trained_model
from llamareg.training.checkpoint import load_model_state, read_checkpoint, save_checkpoint, trainable_state
from llamareg.training.precision import Precision
from llamareg.training.validation import evaluate


def test_frozen_steps_stay_bit_identical_and_keep_no_activations(tiny_config):
    torch.manual_seed(0)
    model = build_model(tiny_config("model.steps=2"))
    model.train_only({1}, shared=False)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("steps.1.")}
    trained_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("steps.1.")}
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    moving, fixed = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    for _ in range(3):
        optimizer.zero_grad()
        out = model(moving, fixed)
        assert not out["step_flows"][0][-1].requires_grad  # step 1 ran without autograd
        ((out["warped"] - fixed) ** 2).mean().backward()
        optimizer.step()
    state = model.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in frozen.items())
    assert any(not torch.equal(value, state[key]) for key, value in trained_before.items())


def test_step_by_step_schedule_writes_each_step_and_the_final_model(tmp_path, tiny_config):
    metrics = run(tiny_config("model.steps=2", "train.step_iters=[2, 2]"))
    assert [entry["step"] for entry in metrics["steps"]] == [1, 2]
    for entry in metrics["steps"]:
        assert entry["iterations"] == 2 and entry["peak_memory_mb"] > 0 and 0 < entry["val_dice"] < 1
        assert entry["peak_memory_of"] == ("phase" if sys.platform.startswith("linux") else "process")
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == metrics["steps"]
    for folder in ("step1", "step2"):
        assert (tmp_path / folder / "checkpoints" / "best.pt").is_file()
    # Step 2 starts from step 1's best with near-zero residual heads: its best is not below it.
    assert metrics["steps"][1]["val_dice_best"] >= metrics["steps"][0]["val_dice_best"] - 1e-3
    # Step 1's weights in step 2's checkpoint are step 1's best, unchanged.
    step1 = read_checkpoint(tmp_path / "step1" / "checkpoints" / "best.pt")["model"]
    final = read_checkpoint(tmp_path / "checkpoints" / "best.pt")
    for key, value in step1.items():
        assert torch.equal(value, final["model"][key]), key
    # The final checkpoint reloads into a fresh model and reproduces its recorded validation Dice.
    config = tiny_config("model.steps=2")
    model = build_model(config)
    load_model_state(model, final, "best.pt")
    _, val_pairs = build_pair_datasets(config)
    result = evaluate(model, torch.utils.data.DataLoader(val_pairs), torch.device("cpu"), Precision.resolve("fp32", torch.device("cpu")))
    assert result["dice"] == pytest.approx(final["best_dice"], abs=1e-12)


def test_joint_schedule_freezes_the_encoder_after_step_one(tmp_path, tiny_config):
    metrics = run(tiny_config("model.steps=2", "train.schedule=joint", "train.step_iters=[2, 2]"))
    assert len(metrics["steps"]) == 2
    step1 = read_checkpoint(tmp_path / "step1" / "checkpoints" / "best.pt")["model"]
    joint = read_checkpoint(tmp_path / "joint" / "checkpoints" / "last.pt")["model"]
    encoder = [key for key in step1 if key.startswith("encoder.")]
    assert encoder and all(torch.equal(step1[key], joint[key]) for key in encoder)
    assert any(not torch.equal(step1[key], joint[key]) for key in step1 if key.startswith("steps.0."))


def test_single_step_runs_need_their_predecessor(tiny_config):
    two_steps = ("model.steps=2", "train.step_iters=[2, 2]")
    with pytest.raises(ValueError, match="--step 2 needs phase 1 finished"):
        run(tiny_config(*two_steps), step=2)
    first = run(tiny_config(*two_steps), step=1)
    assert len(first["steps"]) == 1
    second = run(tiny_config(*two_steps), step=2)
    assert [entry["step"] for entry in second["steps"]] == [1, 2]


def test_step_iters_must_match_the_schedule(tiny_config):
    with pytest.raises(ValueError, match="train.step_iters has 3 entries"):
        run(tiny_config("model.steps=2", "train.step_iters=[2, 2, 2]", "train.schedule=joint"))


def test_a_saved_cascade_reloads_as_register_loads_it_and_gives_the_same_flows(tiny_config, tmp_path):
    config = tiny_config("model.steps=3")
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():  # stand-in for training: every trainable tensor moves away from its initial value
        for parameter in model.trainable_parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = save_checkpoint(
        {
            "config": config.to_dict(),
            "model": trainable_state(model),
            "llm_source": model.llm.source,
            "llm_fingerprint": model.llm.fingerprint,
        },
        tmp_path / "cascade.pt",
    )
    reloaded = load_trained_model(path, device="cpu").model
    moving, fixed = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        before, after = model(moving, fixed), reloaded(moving, fixed)
    assert len(after["step_flows"]) == 3
    for step_before, step_after in zip(before["step_flows"], after["step_flows"]):
        for flow_before, flow_after in zip(step_before, step_after):
            assert torch.equal(flow_before, flow_after)
    assert before["flows"][-1].abs().max() > 1e-3  # the fields are not trivially zero
