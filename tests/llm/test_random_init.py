"""random:<model> sources: seeded layers in a known model's shape, LLaMA-2-7B included."""

from __future__ import annotations

import pytest
import torch

from llamareg.llm import load_llama_layers


def test_llama_2_7b_layer_builds_and_runs_on_cpu():
    loaded = load_llama_layers("random:llama-2-7b", [-1], expected_hidden_size=4096)
    assert loaded.source == "random:llama-2-7b"
    assert loaded.layer_indices == (31,)
    layer = loaded.layers[0]
    assert layer.self_attn.q_proj.weight.shape == (4096, 4096)
    assert layer.mlp.gate_proj.weight.shape == (11008, 4096)
    assert sum(p.numel() for p in layer.parameters()) == 202_383_360  # one LLaMA-2-7B decoder layer
    assert not any(p.requires_grad for p in layer.parameters())
    std = layer.self_attn.v_proj.weight.std().item()
    assert abs(std - 0.02) < 1e-3
    assert torch.equal(layer.input_layernorm.weight, torch.ones(4096))
    x = torch.randn(1, 8, 4096)
    with torch.no_grad():
        y = loaded.final_norm(layer(x))
    assert y.shape == (1, 8, 4096) and torch.isfinite(y).all()


def test_smollm2_shape_has_grouped_query_attention():
    loaded = load_llama_layers("random:smollm2-135m", [0], dtype=torch.float16)
    attention = loaded.layers[0].self_attn
    assert attention.k_proj.weight.shape == (192, 576) and attention.q_proj.weight.shape == (576, 576)
    assert attention.k_proj.weight.dtype == torch.float16


def test_layers_depend_only_on_seed_and_index():
    both = load_llama_layers("random:smollm2-135m", [3, 5], seed=7)
    alone = load_llama_layers("random:smollm2-135m", [5], seed=7)
    assert torch.equal(both.layers[1].mlp.up_proj.weight, alone.layers[0].mlp.up_proj.weight)
    assert not torch.equal(both.layers[0].mlp.up_proj.weight, both.layers[1].mlp.up_proj.weight)
    other_seed = load_llama_layers("random:smollm2-135m", [5], seed=8)
    assert not torch.equal(alone.layers[0].mlp.up_proj.weight, other_seed.layers[0].mlp.up_proj.weight)
    assert alone.fingerprint != other_seed.fingerprint


def test_unknown_random_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="random:llama-2-7b, random:smollm2-135m"):
        load_llama_layers("random:gpt-5", [0])


@pytest.mark.parametrize("indices, message", [([], "non-empty"), ([1.0], "is not an int"), (3, "non-empty")])
def test_malformed_layer_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        load_llama_layers("random:smollm2-135m", indices)
