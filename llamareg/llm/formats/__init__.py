"""Readers of LLaMA checkpoints, one module per source format.

Every reader exposes the same small interface (:class:`LayerReader`): the model's
:class:`~llamareg.llm.spec.LlamaSpec`, a description for messages, and methods that read one
decoder layer (Hugging Face names and layout, shapes checked against the spec) or the final norm,
touching only the tensors asked for.
"""

from __future__ import annotations

from typing import Protocol

import torch

from llamareg.llm.spec import LlamaSpec

__all__ = ["LayerReader"]


class LayerReader(Protocol):
    """What :func:`llamareg.llm.load_llama_layers` needs from a checkpoint format."""

    spec: LlamaSpec
    description: str

    def layer_tensors(self, index: int) -> dict[str, torch.Tensor]:
        """Tensors of decoder layer ``index`` by Hugging Face name (see LlamaSpec.layer_parameter_shapes)."""
        ...

    def final_norm_weight(self) -> torch.Tensor:
        """Weight of the model's final RMS norm, shape (hidden_size,)."""
        ...
