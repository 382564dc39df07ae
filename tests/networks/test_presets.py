"""The shipped presets build the model they describe."""

import torch

from llamareg.config import load_config
from llamareg.models import build_model


def test_paper_preset_builds_with_a_llama2_7b_shaped_layer():
    # The paper preset at a small input: the LLaMA-2-7B layer shape and the adapters are the paper's.
    config = load_config("paper-knee-3090", ["llm.source=random:llama-2-7b", "data.shape=[32, 32, 32]"])
    model = build_model(config)
    layer = model.llm.layers[0]
    assert layer.self_attn.q_proj.weight.shape == (4096, 4096)
    assert layer.mlp.gate_proj.weight.shape == (11008, 4096)
    assert layer.input_layernorm.weight.dtype == torch.float16
    counts = model.parameter_counts()
    assert counts["frozen"] == 202_383_360 + 4096  # one decoder layer + the final norm
    # Paper: a decoding step (adapters, positional embedding, decoder) has about 105M parameters at C=16,
    # mostly Adapter_4 (4096 -> 1024C); the encoder adds a few hundred thousand.
    step = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("llm.", "encoder.")))
    assert 100e6 < step < 110e6
    assert model.steps[0].pathway.output_adapters[3].project.weight.shape == (16 * 1024, 4096)
    with torch.no_grad():
        out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
    assert out["flows"][-1].shape == (1, 3, 32, 32, 32) and torch.isfinite(out["flows"][-1]).all()


def test_cpu_default_uses_the_real_pretrained_smollm2_layer():
    model = build_model(load_config("cpu-default"))
    assert model.llm.source.startswith("gguf:") and model.llm.hidden_size == 576
    assert len(model.llm.layers) == 1 and model.llm.calls == 2
    assert all(not p.requires_grad for p in model.llm.parameters())
