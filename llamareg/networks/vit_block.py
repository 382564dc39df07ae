"""Standard (trainable) ViT blocks in place of the LLM block: the paper's "ViT" ablation."""

from __future__ import annotations

import torch
from torch import nn


class ViTBlocks(nn.Module):
    """``depth`` pre-norm transformer encoder blocks (GELU MLP of 4x width), trained from scratch.

    It offers the interface of :class:`llamareg.networks.frozen_llm.FrozenLLM` (``calls``,
    ``hidden_size``, ``call``) so the token pathway uses it unchanged: one call per block, with the
    pathway's inner adapters between consecutive blocks. Paper ablation: width 4096, 4 heads, depth 2.

    Example:
        >>> blocks = ViTBlocks(width=32, heads=4, depth=2)
        >>> blocks.call(1, blocks.call(0, torch.zeros(1, 6, 32))).shape
        torch.Size([1, 6, 32])
    """

    source = "vit"
    fingerprint = ""

    def __init__(self, width: int, heads: int, depth: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"ViT width {width} is not divisible by its {heads} heads; change model.vit_width or model.vit_heads")
        if depth < 1:
            raise ValueError(f"model.vit_depth must be >= 1, got {depth}")
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth)
        )
        self.hidden_size = width
        self.calls = depth

    def frozen_weight_names(self) -> list[str]:
        """None: the ViT blocks train from scratch."""
        return []

    def call(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.blocks[index](hidden)
