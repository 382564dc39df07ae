"""Our decoder layer against transformers' LlamaDecoderLayer with the same weights."""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from llamareg.llm import LlamaDecoderLayer, LlamaSpec, RMSNorm


def spec_of(model) -> LlamaSpec:
    config = model.config
    return LlamaSpec(
        config.hidden_size,
        config.intermediate_size,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.rms_norm_eps,
        config.num_hidden_layers,
    )


def test_parameter_names_and_shapes_match_transformers(tiny_llama):
    hf_state = tiny_llama.model.layers[1].state_dict()
    ours = LlamaDecoderLayer(spec_of(tiny_llama)).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in hf_state.items()}


@pytest.mark.parametrize("index", [0, 2])
def test_forward_equals_transformers_layer_without_rotary_and_mask(tiny_llama, hf_forward, index):
    hf_layer = tiny_llama.model.layers[index]
    layer = LlamaDecoderLayer(spec_of(tiny_llama)).eval()
    layer.load_state_dict(hf_layer.state_dict())
    x = torch.randn(2, 11, 64)
    with torch.no_grad():
        ours = layer(x)
    expected = hf_forward(hf_layer, x)
    assert ours.shape == (2, 11, 64)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, x, atol=1e-2)  # the layer does something


def test_attention_is_bidirectional(tiny_llama):
    layer = LlamaDecoderLayer(spec_of(tiny_llama)).eval()
    layer.load_state_dict(tiny_llama.model.layers[0].state_dict())
    x = torch.randn(1, 6, 64)
    changed = x.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        first_token_shift = (layer(changed)[:, 0] - layer(x)[:, 0]).abs().max()
    # A causal layer would leave token 0 untouched by a change of the last token.
    assert first_token_shift > 1e-4


def test_rms_norm_equals_transformers_in_half_precision():
    ours, theirs = RMSNorm(32, eps=1e-5), LlamaRMSNorm(32, eps=1e-5)
    weight = torch.randn(32)
    ours.weight.data.copy_(weight)
    theirs.weight.data.copy_(weight)
    x = torch.randn(3, 5, 32).to(torch.bfloat16)
    with torch.no_grad():
        torch.testing.assert_close(ours.to(torch.bfloat16)(x), theirs.to(torch.bfloat16)(x), rtol=0, atol=0)


def test_wrong_input_width_is_a_clear_error():
    layer = LlamaDecoderLayer(LlamaSpec(64, 128, 4, 2, 1e-5, 1))
    with pytest.raises(ValueError, match="expects \\(batch, tokens, 64\\)"):
        layer(torch.randn(1, 3, 32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_size=60, num_attention_heads=7), "not divisible by num_attention_heads"),
        (dict(num_key_value_heads=3), "not divisible by num_key_value_heads"),
        (dict(intermediate_size=0), "intermediate_size must be a positive int"),
    ],
)
def test_spec_rejects_inconsistent_sizes(kwargs, message):
    base = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, num_hidden_layers=2)
    with pytest.raises(ValueError, match=message):
        LlamaSpec(**{**base, **kwargs})
