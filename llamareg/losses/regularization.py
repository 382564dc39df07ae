"""Smoothness regularisers on displacement fields."""

from __future__ import annotations

import torch
from torch import nn


def diffusion(flow: torch.Tensor) -> torch.Tensor:
    """Diffusion regulariser: mean squared forward difference, averaged over the three spatial axes.

    Equals voxelmorph's ``Grad('l2')``: ``(mean(d_D u^2) + mean(d_H u^2) + mean(d_W u^2)) / 3``, each
    mean taken over batch, components and the voxels where the forward difference exists.

    Args:
        flow: ``(B, 3, D, H, W)`` displacement in voxels; every spatial size must be at least 2.

    Returns:
        Scalar loss.

    Example:
        >>> flow = torch.zeros(1, 3, 4, 4, 4); flow[:, 0] = torch.arange(4.0).view(4, 1, 1)
        >>> round(diffusion(flow).item(), 4)  # slope 1 in one of 3 components along one of 3 axes: 1/9
        0.1111
    """
    if flow.ndim != 5 or flow.shape[1] != 3:
        raise ValueError(f"flow must have shape (B, 3, D, H, W), got {tuple(flow.shape)}")
    if min(flow.shape[2:]) < 2:
        raise ValueError(f"flow spatial sizes must all be >= 2 for finite differences, got {tuple(flow.shape[2:])}")
    squared_differences = [torch.diff(flow, dim=axis).pow(2).mean() for axis in (2, 3, 4)]
    return sum(squared_differences) / 3


class DiffusionRegularizer(nn.Module):
    """Module form of :func:`diffusion`."""

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        return diffusion(flow)
