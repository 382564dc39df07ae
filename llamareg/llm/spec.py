"""Shape description of a LLaMA decoder layer, shared by every checkpoint format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["LlamaSpec", "check_tensor_shape", "rotary_interleaved_to_half_split", "qk_rows_to_half_split"]


@dataclass(frozen=True)
class LlamaSpec:
    """The sizes that fix the shapes of a LLaMA decoder layer.

    Args:
        hidden_size: model width (4096 for LLaMA-2-7B, 576 for SmolLM2-135M).
        intermediate_size: width of the SiLU-gated MLP.
        num_attention_heads: number of query heads.
        num_key_value_heads: number of key/value heads (grouped-query attention when smaller).
        rms_norm_eps: epsilon of the RMS norms.
        num_hidden_layers: number of decoder layers in the whole model.

    Example:
        >>> LlamaSpec(576, 1536, 9, 3, 1e-5, 30).head_dim
        64
    """

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    num_hidden_layers: int

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LlamaSpec.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"LlamaSpec: hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"LlamaSpec: num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if not self.rms_norm_eps > 0:
            raise ValueError(f"LlamaSpec.rms_norm_eps must be > 0, got {self.rms_norm_eps!r}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    def layer_parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of one decoder layer's parameters, by Hugging Face name."""
        hidden, ffn, kv_width = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        return {
            "self_attn.q_proj.weight": (hidden, hidden),
            "self_attn.k_proj.weight": (kv_width, hidden),
            "self_attn.v_proj.weight": (kv_width, hidden),
            "self_attn.o_proj.weight": (hidden, hidden),
            "mlp.gate_proj.weight": (ffn, hidden),
            "mlp.up_proj.weight": (ffn, hidden),
            "mlp.down_proj.weight": (hidden, ffn),
            "input_layernorm.weight": (hidden,),
            "post_attention_layernorm.weight": (hidden,),
        }


def check_tensor_shape(shape: Sequence[int], expected: Sequence[int], file: str, tensor_name: str, spec: LlamaSpec) -> None:
    """Raise a one-line ValueError when a stored tensor's shape contradicts the spec read from its config."""
    if tuple(shape) != tuple(expected):
        raise ValueError(
            f"{file}: tensor {tensor_name} has shape {tuple(shape)} but the config implies {tuple(expected)} "
            f"(hidden_size={spec.hidden_size}, intermediate_size={spec.intermediate_size}, "
            f"heads={spec.num_attention_heads}, kv_heads={spec.num_key_value_heads}); config and weights disagree"
        )


def rotary_interleaved_to_half_split(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorder q/k projection rows from the interleaved rotary layout to Hugging Face's half-split layout.

    Meta checkpoints and llama.cpp's GGUF files pair rotary dimensions as (0, 1), (2, 3), ... within
    each head; Hugging Face pairs (0, d/2), (1, d/2 + 1), .... This is the permutation of
    transformers' convert_llama_weights_to_hf.py (and the inverse of llama.cpp's HF->GGUF one).
    llamareg applies no rotary embedding, and without it attention is invariant to this reordering
    (q and k rows move together inside a head); the reordering still matters for comparing tensors
    across formats, for the fingerprint, and for any later use of rotary embedding.

    Args:
        weight: (num_heads * head_dim, in_features) projection weight.
        num_heads: heads in this projection (query heads for q, key/value heads for k).
    """
    rows, columns = weight.shape
    if rows % (2 * num_heads):
        raise ValueError(f"cannot split {rows} projection rows into {num_heads} heads of even width")
    return weight.reshape(num_heads, rows // num_heads // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


def qk_rows_to_half_split(tensors: dict[str, torch.Tensor], spec: LlamaSpec) -> dict[str, torch.Tensor]:
    """A layer's tensors (Hugging Face names) with q and k rows moved from the interleaved rotary layout
    to Hugging Face's; shared by the Meta and GGUF readers."""
    heads = {"self_attn.q_proj.weight": spec.num_attention_heads, "self_attn.k_proj.weight": spec.num_key_value_heads}
    return {name: rotary_interleaved_to_half_split(t, heads[name]) if name in heads else t for name, t in tensors.items()}
