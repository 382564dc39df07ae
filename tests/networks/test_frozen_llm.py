from __future__ import annotations

import pytest
import torch

from llamareg.llm import load_llama_layers
from llamareg.networks.frozen_llm import FrozenLLM


def _block(dtype: torch.dtype) -> FrozenLLM:
    loaded = load_llama_layers("random:llama-2-7b", [-1], dtype=dtype)  # same seed: the same weights, rounded
    return FrozenLLM(loaded.layers, loaded.final_norm, calls=2)  # the paper's block: layer 31 twice


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_block_takes_unbounded_adapter_outputs(dtype):
    # Adapter0 in front of the block bounds nothing: activations of 1e3 occur, and 1e5 is past fp16's
    # largest value (65504), where a residual stream held in fp16 would turn to inf at once.
    reference, half = _block(torch.float32), _block(dtype)
    generator = torch.Generator().manual_seed(0)
    for scale in (1e3, 1e5):
        tokens = torch.randn(1, 24, 4096, generator=generator) * scale
        with torch.no_grad():
            expected = reference.call(1, reference.call(0, tokens))
            out = half.call(1, half.call(0, tokens))
        assert out.dtype == torch.float32 and torch.isfinite(out).all(), scale
        relative = ((out - expected).norm() / expected.norm()).item()
        assert relative < 2e-2, (scale, relative)
