"""Adapters between image features, LLM tokens and decoder feature maps."""

from __future__ import annotations

import torch
from torch import nn

from llamareg.networks.blocks import upsample_conv


class TokenAdapter(nn.Sequential):
    """Linear(in -> width) then Linear(width -> out), no activation between them.

    This is both Adapter0 (tokens of width 32C into the LLM's hidden size) and the inner adapter
    between two LLM calls; the public release uses no activation in either.
    """

    def __init__(self, in_features: int, width: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, width), nn.Linear(width, out_features))


def tokens_to_volume(tokens: torch.Tensor, grid: tuple[int, int, int], patch: int) -> torch.Tensor:
    """Rearrange ``B (D H W) (c d h w) -> B c (D d) (H h) (W w)`` with d = h = w = ``patch``.

    Example:
        >>> tokens_to_volume(torch.zeros(1, 8, 2 * 8), grid=(2, 2, 2), patch=2).shape
        torch.Size([1, 2, 4, 4, 4])
    """
    batch, count, width = tokens.shape
    depth, height, breadth = grid
    if count != depth * height * breadth or width % patch**3:
        raise ValueError(f"cannot rearrange tokens of shape {tuple(tokens.shape)} onto grid {grid} with patch {patch}")
    channels = width // patch**3
    x = tokens.reshape(batch, depth, height, breadth, channels, patch, patch, patch)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(batch, channels, depth * patch, height * patch, breadth * patch)


class OutputAdapter(nn.Module):
    """Adapter_i of the paper: LLM tokens -> decoder features one level above the token grid's patch level.

    Level ``i`` (1..4) projects each token to 2^(2(i+1)) C values, unfolds them into a patch of side
    2^(i-1) with 2^(5-i) C channels (16C @1/16, 8C @1/8, 4C @1/4, 2C @1/2), and a transposed convolution
    brings them up one level with half the channels (8C @1/8, 4C @1/4, 2C @1/2, C @full).
    """

    def __init__(self, hidden_size: int, base_channels: int, level: int) -> None:
        super().__init__()
        if not 1 <= level <= 4:
            raise ValueError(f"output adapter level must be 1..4, got {level}")
        self.patch = 2 ** (level - 1)
        channels = 2 ** (5 - level) * base_channels
        self.project = nn.Linear(hidden_size, channels * self.patch**3)
        self.up = upsample_conv(channels, channels // 2)
        self.out_channels = channels // 2

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return self.up(tokens_to_volume(self.project(tokens), grid, self.patch))
