"""How a decoder turns stage outputs into displacement fields: upsampling, combination, integration."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llamareg.spatial.functional import compose, integrate_velocity, resize_flow


class FlowFieldRules:
    """The choices the paper and the public release disagree on, in one place.

    Args:
        combination: ``compose`` (paper: a finer stage's residual field is composed with the
            upsampled coarser field) or ``add`` (release: the fields are summed).
        rescale_upsampled: Scale a field's magnitude with its grid when upsampling (voxel units
            double with the resolution); the release does not.
        diffeomorphic: Stage outputs are stationary velocity fields, integrated by scaling and squaring.
        integration_steps: Scaling-and-squaring steps.

    Example:
        >>> rules = FlowFieldRules()
        >>> coarse = torch.ones(1, 3, 4, 4, 4)
        >>> rules.upsample(coarse, (8, 8, 8)).mean().item()
        2.0
    """

    def __init__(
        self,
        combination: str = "compose",
        rescale_upsampled: bool = True,
        diffeomorphic: bool = False,
        integration_steps: int = 7,
    ) -> None:
        if combination not in ("compose", "add"):
            raise ValueError(f"flow combination must be 'compose' or 'add', got '{combination}'")
        self.combination = combination
        self.rescale_upsampled = rescale_upsampled
        self.diffeomorphic = diffeomorphic
        self.integration_steps = integration_steps

    def field(self, head_output: torch.Tensor) -> torch.Tensor:
        """The displacement a flow head's output stands for."""
        if self.diffeomorphic:
            return integrate_velocity(head_output, self.integration_steps)
        return head_output

    def upsample(self, flow: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        if self.rescale_upsampled:
            return resize_flow(flow, size)
        return F.interpolate(flow, size=size, mode="trilinear", align_corners=False)

    def combine(self, previous: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Field of ``residual`` applied after the images were aligned by ``previous``."""
        if self.combination == "compose":
            return compose(previous, residual)
        return previous + residual
