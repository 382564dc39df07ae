"""Randomly initialised layers in the shape of a known model (not-pretrained ablation, benchmarks)."""

from __future__ import annotations

import torch

from llamareg.llm.spec import LlamaSpec

__all__ = ["KNOWN_SPECS", "RandomReader"]

KNOWN_SPECS: dict[str, LlamaSpec] = {
    "llama-2-7b": LlamaSpec(
        hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5, num_hidden_layers=32
    ),
    "smollm2-135m": LlamaSpec(
        hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5, num_hidden_layers=30
    ),
}

# Hugging Face's LlamaConfig.initializer_range: linear weights ~ N(0, 0.02), norm weights = 1.
INITIALIZER_STD = 0.02


class RandomReader:
    """Produces seeded random layers in a known model's shape, initialised as Hugging Face does.

    Layer ``i`` depends only on ``(seed, i)``, so it is the same whichever other layers are asked for.

    Args:
        model_name: a key of :data:`KNOWN_SPECS`, e.g. ``"llama-2-7b"``.
        seed: random seed.
    """

    def __init__(self, model_name: str, seed: int) -> None:
        if model_name not in KNOWN_SPECS:
            raise ValueError(f"unknown model 'random:{model_name}'; choose one of {', '.join('random:' + name for name in KNOWN_SPECS)}")
        self.spec = KNOWN_SPECS[model_name]
        self.description = f"random:{model_name}"
        self.seed = seed

    def layer_tensors(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        tensors = {}
        for name, shape in self.spec.layer_parameter_shapes().items():
            if name.endswith("layernorm.weight"):
                tensors[name] = torch.ones(shape)
            else:
                tensors[name] = torch.empty(shape).normal_(0.0, INITIALIZER_STD, generator=generator)
        return tensors

    def final_norm_weight(self) -> torch.Tensor:
        return torch.ones(self.spec.hidden_size)
