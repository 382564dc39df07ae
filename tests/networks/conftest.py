"""Inputs shared by the network tests."""

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture
def smooth_pair():
    """A function of a shape giving two smooth random (1, 1, D, H, W) images: noise on a 4^3 grid,
    upsampled. Gradients of such images are sums of signal rather than of near-cancelling noise, so
    float rounding in another summation order stays far below their size."""

    def pair(shape):
        generator = torch.Generator().manual_seed(1)
        coarse = torch.rand(2, 1, 4, 4, 4, generator=generator)
        moving, fixed = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True).split(1)
        return moving.contiguous(), fixed.contiguous()

    return pair
