"""Learnable positional embedding on the token grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GridPositionalEmbedding(nn.Module):
    """A zero-initialised learnable embedding laid out on the 3D token grid of the training shape.

    Inputs of another shape get the embedding trilinearly resampled to their grid (as ViTs do for
    other image sizes), so the token count follows the input shape instead of being hard-coded.

    Example:
        >>> embedding = GridPositionalEmbedding(channels=8, grid=(4, 5, 4))
        >>> embedding((2, 3, 2)).shape
        torch.Size([1, 12, 8])
    """

    def __init__(self, channels: int, grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, *grid))

    def forward(self, grid: tuple[int, int, int]) -> torch.Tensor:
        weight = self.weight
        if tuple(weight.shape[2:]) != tuple(grid):
            weight = F.interpolate(weight, size=grid, mode="trilinear", align_corners=False)
        return weight.flatten(2).transpose(1, 2)
