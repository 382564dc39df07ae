"""The paper's multi-scale unsupervised objective."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llamareg.losses.overlap import soft_dice_loss
from llamareg.losses.regularization import diffusion
from llamareg.losses.similarity import similarity_loss
from llamareg.spatial.functional import warp
from llamareg.spatial.pyramid import image_pyramid, pool_to


class MultiScaleObjective(nn.Module):
    """Sum over scales of weight * (similarity(moving warped, fixed) + lambda * diffusion(flow)).

    Each flow is scored at its own resolution against the images average-pooled to that grid
    (paper: weights 0.25 / 0.5 / 1.0 for the 1/4, 1/2 and full-resolution flows). With
    ``label_weight`` > 0 and labels given (synthetic training data), ``label_weight`` times the soft
    Dice loss of the warped labels is added at full resolution (SynthMorph's supervision). With
    ``flow_weight`` > 0 and the true displacement given (synthetic pairs know it), ``flow_weight`` times
    the mean squared end-point error of the full-resolution flow (voxels squared) is added: a dense
    signal at every voxel, which a CPU budget of a few hundred iterations needs to learn to match
    images at all.

    Args:
        similarity: ``mse`` or ``ncc``.
        reg_weight: lambda.
        scale_weights: One weight per flow, coarsest first.
        label_weight: Weight of the label-overlap term (0: images only, as in the paper).
        flow_weight: Weight of the end-point-error term (0: unsupervised, as in the paper).
    """

    def __init__(
        self,
        similarity: str = "mse",
        reg_weight: float = 0.04,
        scale_weights: Sequence[float] = (0.25, 0.5, 1.0),
        label_weight: float = 0.0,
        flow_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight}")
        if label_weight < 0 or flow_weight < 0:
            raise ValueError(f"label_weight and flow_weight must be >= 0, got {label_weight} and {flow_weight}")
        self.similarity = similarity_loss(similarity)
        self.reg_weight = reg_weight
        self.scale_weights = tuple(scale_weights)
        self.label_weight = label_weight
        self.flow_weight = flow_weight

    def forward(
        self,
        moving: torch.Tensor,
        fixed: torch.Tensor,
        flows: Sequence[torch.Tensor],
        full_size: Sequence[int] | None = None,
        labels: tuple[torch.Tensor, torch.Tensor] | None = None,
        true_flow: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the total loss and its terms (detached scalars, for logging: reading one with ``.item()``
        waits for the device, so the trainer does it only when it logs).

        ``moving`` and ``fixed`` have the last flow's resolution. ``full_size`` (the input volumes'
        shape, when the last flow is coarser, as while LapIRN trains a coarse level) only names the
        terms by each flow's true scale. ``labels`` are the ``(moving, fixed)`` label maps at the last
        flow's resolution, used when ``label_weight`` > 0; ``true_flow`` the pair's known
        ``(B, 3, D, H, W)`` displacement there, used when ``flow_weight`` > 0."""
        if len(flows) != len(self.scale_weights):
            raise ValueError(f"got {len(flows)} flows but {len(self.scale_weights)} scale weights")
        levels = len(flows)
        moving_pyramid, fixed_pyramid = image_pyramid(moving, levels), image_pyramid(fixed, levels)
        total = moving.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        for level, (weight, flow) in enumerate(zip(self.scale_weights, flows)):
            # Score in fp32: under fp16 autocast, squared differences of small values underflow.
            flow = flow.float()
            similarity = self.similarity(warp(moving_pyramid[level].float(), flow), fixed_pyramid[level].float())
            smoothness = diffusion(flow)
            total = total + weight * (similarity + self.reg_weight * smoothness)
            scale = 2 ** (levels - 1 - level) if full_size is None else round(full_size[0] / flow.shape[2])
            terms[f"similarity_1/{scale}" if scale > 1 else "similarity_full"] = similarity.detach()
            terms[f"diffusion_1/{scale}" if scale > 1 else "diffusion_full"] = smoothness.detach()
        if self.label_weight > 0 and labels is not None:
            overlap = soft_dice_loss(labels[0], labels[1], flows[-1])
            total = total + self.label_weight * overlap
            terms["label_dice_loss"] = overlap.detach()
        if self.flow_weight > 0 and true_flow is not None:
            error = (flows[-1].float() - true_flow.float()).pow(2).sum(dim=1).mean()
            total = total + self.flow_weight * error
            terms["flow_error"] = error.detach()
        terms["loss"] = total.detach()
        return total, terms


def objective_images(moving: torch.Tensor, fixed: torch.Tensor, flows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair at the resolution of ``flows[-1]``, for :class:`llamareg.training.objective.MultiScaleObjective`.

    The objective scores flow ``i`` of ``n`` against the images pooled ``n-1-i`` times, assuming the
    last flow has the images' resolution. While LapIRN trains its coarser levels the last flow is at
    1/4 or 1/2 resolution, so pass the images pooled to it:
    ``objective(*objective_images(moving, fixed, flows), flows)``. For every other model (and LapIRN
    with all levels active) the images come back unchanged.

    Example:
        >>> m, f = objective_images(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 1, 16, 16, 16), [torch.zeros(1, 3, 4, 4, 4)])
        >>> tuple(m.shape)
        (1, 1, 4, 4, 4)
    """
    size = flows[-1].shape[2:]
    return pool_to(moving, size), pool_to(fixed, size)
