"""Shared fixtures for the LLM tests: a tiny Hugging Face LLaMA and helpers to run transformers' layer."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3, rms_norm_eps=1e-5)


def make_tiny_llama(seed: int = 0, **overrides: int) -> LlamaForCausalLM:
    """A small LlamaForCausalLM (grouped-query attention) whose weights, norms included, are all random."""
    config = LlamaConfig(vocab_size=50, tie_word_embeddings=False, attn_implementation="eager", **{**TINY, **overrides})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.1 + (1.0 if parameter.dim() == 1 else 0.0))
    return model


def hf_layer_forward(hf_layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' decoder layer with identity rotary (cos=1, sin=0) and no mask (eager => not causal)."""
    # transformers' sdpa/flash paths treat a missing mask as causal; only eager is bidirectional then.
    assert hf_layer.self_attn.config._attn_implementation == "eager"
    head_dim = hf_layer.self_attn.head_dim
    cos = torch.ones(x.shape[0], x.shape[1], head_dim, dtype=x.dtype)
    sin = torch.zeros_like(cos)
    with torch.no_grad():
        return hf_layer(x, attention_mask=None, position_embeddings=(cos, sin))


@pytest.fixture(scope="module")
def tiny_llama() -> LlamaForCausalLM:
    return make_tiny_llama()


@pytest.fixture(scope="session")
def tiny_llama_factory():
    """make_tiny_llama, as a fixture: with --import-mode=importlib test modules cannot import conftest."""
    return make_tiny_llama


@pytest.fixture(scope="session")
def hf_forward():
    """hf_layer_forward, as a fixture."""
    return hf_layer_forward
