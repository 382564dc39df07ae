"""Thin ``nn.Module`` wrappers over :mod:`llamareg.spatial.functional` for use inside networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from llamareg.checks import look_up_option
from llamareg.spatial import functional


class SpatialTransformer(nn.Module):
    """Warp an image with a displacement field: ``warped(x) = image(x + flow(x))``.

    Args:
        mode: ``"bilinear"`` for intensities or ``"nearest"`` for label maps.
        padding_mode: ``"border"``, ``"zeros"`` or ``"reflection"``.

    Example:
        >>> SpatialTransformer()(torch.rand(1, 1, 4, 4, 4), torch.zeros(1, 3, 4, 4, 4)).shape
        torch.Size([1, 1, 4, 4, 4])
    """

    def __init__(self, mode: str = "bilinear", padding_mode: str = "border") -> None:
        super().__init__()
        # Checked here too so a misconfigured model fails at construction, not at its first forward pass.
        look_up_option(mode, functional.WARP_MODES, "mode")
        look_up_option(padding_mode, functional.PADDING_MODES, "padding_mode")
        self.mode = mode
        self.padding_mode = padding_mode

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return functional.warp(image, flow, mode=self.mode, padding_mode=self.padding_mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, padding_mode={self.padding_mode!r}"


class VelocityIntegrator(nn.Module):
    """Turn a stationary velocity field into a diffeomorphic displacement by scaling and squaring.

    Args:
        steps: number of squarings; ``0`` makes the module the identity (plain displacement output).

    Example:
        >>> VelocityIntegrator(steps=4)(torch.full((1, 3, 4, 4, 4), 1.0))[0, 0, 2, 2, 2].item()
        1.0
    """

    def __init__(self, steps: int = 7) -> None:
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        self.steps = steps

    def forward(self, velocity: torch.Tensor) -> torch.Tensor:
        return functional.integrate_velocity(velocity, steps=self.steps)

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


class FlowResizer(nn.Module):
    """Resample a displacement field to another grid, rescaling it to that grid's voxel units.

    The target size is given at call time, so odd sizes in an encoder pyramid are matched exactly.

    Example:
        >>> FlowResizer()(torch.ones(1, 3, 4, 4, 4), (8, 8, 8))[0, :, 0, 0, 0].tolist()
        [2.0, 2.0, 2.0]
    """

    def forward(self, flow: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return functional.resize_flow(flow, size)
