from __future__ import annotations

import math

import pytest
import torch

from llamareg.metrics.jacobian import folding_percentage, sd_log_jacobian
from llamareg.spatial.functional import identity_grid


def slab_stretch(shape, slope, slab_end):
    """u_W = slope * x_W for D < slab_end, zero elsewhere: det J = 1 + slope in the slab and 1 outside."""
    flow = torch.zeros(1, 3, *shape, dtype=torch.float64)
    flow[:, 2, :slab_end] = slope * identity_grid(shape, dtype=torch.float64)[:, 2, :slab_end]
    return flow


def test_folding_percentage_of_hand_made_folding_field():
    flow = slab_stretch((8, 5, 6), slope=-2.0, slab_end=3)
    assert folding_percentage(flow).tolist() == [pytest.approx(100 * 3 / 8)]


def test_folding_percentage_counts_inside_mask_only():
    flow = slab_stretch((8, 5, 6), slope=-2.0, slab_end=3)
    mask = torch.zeros(1, 1, 8, 5, 6)
    mask[:, :, 2:6] = 1  # one folded slice out of four
    assert folding_percentage(flow, mask).tolist() == [pytest.approx(25.0)]
    with pytest.raises(ValueError, match="mask must be"):
        folding_percentage(flow, torch.ones(1, 8, 5, 5))


def test_folding_percentage_is_zero_for_smooth_compression():
    flow = slab_stretch((8, 5, 6), slope=-0.5, slab_end=8)
    assert folding_percentage(flow).tolist() == [0.0]


def test_sd_log_jacobian_of_two_valued_determinant():
    # After the 2-voxel border crop, D = 2..9 holds 4 slices with det 1 + a and 4 with det 1.
    for slope, log_det in [(0.5, math.log(1.5)), (-2.0, math.log(1e-9))]:
        flow = slab_stretch((12, 6, 7), slope=slope, slab_end=6)
        assert sd_log_jacobian(flow).tolist() == [pytest.approx(abs(log_det) / 2)]


def test_sd_log_jacobian_is_zero_for_uniform_scaling_and_respects_mask():
    assert sd_log_jacobian(slab_stretch((8, 6, 7), slope=0.3, slab_end=8)).tolist() == [pytest.approx(0.0, abs=1e-12)]
    flow = slab_stretch((12, 6, 7), slope=0.5, slab_end=6)
    inside_slab = torch.zeros(1, 12, 6, 7)
    inside_slab[:, :6] = 1
    assert sd_log_jacobian(flow, inside_slab).tolist() == [pytest.approx(0.0, abs=1e-12)]


def test_sd_log_jacobian_rejects_volumes_without_interior():
    with pytest.raises(ValueError, match="exceed 4"):
        sd_log_jacobian(torch.zeros(1, 3, 4, 8, 8))
