"""The paper's multi-scale unsupervised objective."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llamareg.losses.regularization import diffusion
from llamareg.losses.similarity import similarity_loss
from llamareg.spatial.functional import warp
from llamareg.spatial.pyramid import image_pyramid


class MultiScaleObjective(nn.Module):
    """Sum over scales of weight * (similarity(moving warped, fixed) + lambda * diffusion(flow)).

    Each flow is scored at its own resolution against the images average-pooled to that grid
    (paper: weights 0.25 / 0.5 / 1.0 for the 1/4, 1/2 and full-resolution flows).

    Args:
        similarity: ``mse`` or ``ncc``.
        reg_weight: lambda.
        scale_weights: One weight per flow, coarsest first.
    """

    def __init__(self, similarity: str = "mse", reg_weight: float = 0.04, scale_weights: Sequence[float] = (0.25, 0.5, 1.0)) -> None:
        super().__init__()
        if reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight}")
        self.similarity = similarity_loss(similarity)
        self.reg_weight = reg_weight
        self.scale_weights = tuple(scale_weights)

    def forward(
        self, moving: torch.Tensor, fixed: torch.Tensor, flows: Sequence[torch.Tensor], full_size: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the total loss and its terms (as floats, for logging).

        ``moving`` and ``fixed`` have the last flow's resolution. ``full_size`` (the input volumes'
        shape, when the last flow is coarser, as while LapIRN trains a coarse level) only names the
        terms by each flow's true scale."""
        if len(flows) != len(self.scale_weights):
            raise ValueError(f"got {len(flows)} flows but {len(self.scale_weights)} scale weights")
        levels = len(flows)
        moving_pyramid, fixed_pyramid = image_pyramid(moving, levels), image_pyramid(fixed, levels)
        total = moving.new_zeros(())
        terms: dict[str, float] = {}
        for level, (weight, flow) in enumerate(zip(self.scale_weights, flows)):
            # Score in fp32: under fp16 autocast, squared differences of small values underflow.
            flow = flow.float()
            similarity = self.similarity(warp(moving_pyramid[level].float(), flow), fixed_pyramid[level].float())
            smoothness = diffusion(flow)
            total = total + weight * (similarity + self.reg_weight * smoothness)
            scale = 2 ** (levels - 1 - level) if full_size is None else round(full_size[0] / flow.shape[2])
            terms[f"similarity_1/{scale}" if scale > 1 else "similarity_full"] = similarity.item()
            terms[f"diffusion_1/{scale}" if scale > 1 else "diffusion_full"] = smoothness.item()
        terms["loss"] = total.item()
        return total, terms
