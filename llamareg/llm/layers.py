"""LLaMA decoder layer with Hugging Face parameter names, bidirectional and without rotary embedding.

Our own implementation rather than transformers' class, whose constructor and forward signature
change between versions. Tokens here are 3D image patches: attention sees every token (no causal
mask) and positions come from the registration network's own learnable embedding, so no rotary
embedding is applied (as in the LLaMA-Reg release).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llamareg.llm.spec import LlamaSpec

__all__ = ["RMSNorm", "LlamaAttention", "LlamaMLP", "LlamaDecoderLayer"]


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32, as in LLaMA.

    Example:
        >>> RMSNorm(8)(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 8])
    """

    def __init__(self, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LlamaAttention(nn.Module):
    """Bidirectional grouped-query self-attention without rotary embedding."""

    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        self.num_heads = spec.num_attention_heads
        self.num_key_value_heads = spec.num_key_value_heads
        self.head_dim = spec.head_dim
        kv_width = spec.num_key_value_heads * spec.head_dim
        self.q_proj = nn.Linear(spec.hidden_size, spec.hidden_size, bias=False)
        self.k_proj = nn.Linear(spec.hidden_size, kv_width, bias=False)
        self.v_proj = nn.Linear(spec.hidden_size, kv_width, bias=False)
        self.o_proj = nn.Linear(spec.hidden_size, spec.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q = self.q_proj(x).view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, tokens, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, tokens, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        groups = self.num_heads // self.num_key_value_heads
        if groups > 1:
            # Query head h reads key/value head h // groups, as in transformers' repeat_kv.
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim))


class LlamaMLP(nn.Module):
    """SiLU-gated feed-forward block: down(silu(gate(x)) * up(x))."""

    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.up_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm LLaMA decoder layer: x + attn(norm(x)), then + mlp(norm(.)).

    The residual stream and the norms run in the input's dtype and in fp32 respectively; attention and
    MLP run in the weights' dtype (fp16 or bf16 weights on a GPU), so fp16 weights are safe for
    activations of any magnitude.

    Parameter names match Hugging Face's (``self_attn.q_proj.weight``, ``mlp.gate_proj.weight``,
    ``input_layernorm.weight``, ...), so a Hugging Face layer's state dict loads directly.

    Example:
        >>> spec = LlamaSpec(64, 128, 4, 2, 1e-5, 2)
        >>> LlamaDecoderLayer(spec)(torch.randn(1, 10, 64)).shape
        torch.Size([1, 10, 64])
    """

    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        self.spec = spec
        self.self_attn = LlamaAttention(spec)
        self.mlp = LlamaMLP(spec)
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map tokens (B, N, hidden) to (B, N, hidden)."""
        if x.dim() != 3 or x.shape[-1] != self.spec.hidden_size:
            raise ValueError(f"LlamaDecoderLayer expects (batch, tokens, {self.spec.hidden_size}), got {tuple(x.shape)}")
        # The residual stream stays in x's dtype (fp32 from FrozenLLM) and only the normalised input of
        # each sublayer goes to the weights' dtype: fp16 holds at most 65504, and the adapters in front of
        # the block bound nothing, so an fp16 residual stream could overflow to inf.
        weight_dtype = self.input_layernorm.weight.dtype
        x = x + self.self_attn(self.input_layernorm(x).to(weight_dtype)).to(x.dtype)
        return x + self.mlp(self.post_attention_layernorm(x).to(weight_dtype)).to(x.dtype)
