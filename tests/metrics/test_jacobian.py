from __future__ import annotations

import math

import pytest
import torch

from llamareg.metrics.jacobian import folding_percentage, non_diffeomorphic_volume, sdlogj_l2r
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


def test_sdlogj_l2r_of_two_valued_determinant_is_learn2regs_formula():
    # After the 2-voxel border crop, D = 2..9 holds 4 slices with det 1 + a and 4 with det 1; Learn2Reg
    # takes std(log(clip(det + 3, 1e-9, 1e9))), so the two values are log(4 + a) and log(4).
    for slope in (0.5, -2.0, -5.0):  # det 1.5; det -1 (folded, still > 0 after +3); det -4 (clipped to 1e-9)
        flow = slab_stretch((12, 6, 7), slope=slope, slab_end=6)
        shifted = max(4 + slope, 1e-9)
        assert sdlogj_l2r(flow).tolist() == [pytest.approx(abs(math.log(shifted) - math.log(4)) / 2)]


def test_sdlogj_l2r_differs_from_the_unshifted_log_of_a_smooth_field():
    # A smooth field: det J = 1.5 in half the interior, 1 elsewhere. Unshifted: |log 1.5| / 2 = 0.203.
    flow = slab_stretch((12, 6, 7), slope=0.5, slab_end=6)
    assert sdlogj_l2r(flow).item() == pytest.approx(math.log(4.5 / 4) / 2)  # 0.059
    assert sdlogj_l2r(flow).item() < 0.5 * abs(math.log(1.5)) / 2


def test_sdlogj_l2r_is_zero_for_uniform_scaling_and_respects_mask():
    assert sdlogj_l2r(slab_stretch((8, 6, 7), slope=0.3, slab_end=8)).tolist() == [pytest.approx(0.0, abs=1e-12)]
    flow = slab_stretch((12, 6, 7), slope=0.5, slab_end=6)
    inside_slab = torch.zeros(1, 12, 6, 7)
    inside_slab[:, :6] = 1
    assert sdlogj_l2r(flow, inside_slab).tolist() == [pytest.approx(0.0, abs=1e-12)]


def test_sdlogj_l2r_rejects_volumes_without_interior():
    with pytest.raises(ValueError, match="exceed 4"):
        sdlogj_l2r(torch.zeros(1, 3, 4, 8, 8))


def test_non_diffeomorphic_volume_of_hand_made_fields():
    shape = (8, 7, 6)
    grid = identity_grid(shape, dtype=torch.float64)
    interior = torch.zeros(1, *shape)
    interior[:, 1:-1, 1:-1, 1:-1] = 1  # away from the one-voxel border, where the edge padding differs
    # Identity and a uniform stretch: every tetrahedron keeps its orientation.
    assert non_diffeomorphic_volume(torch.zeros(1, 3, *shape, dtype=torch.float64)).tolist() == [0.0]
    stretch = torch.zeros(1, 3, *shape, dtype=torch.float64)
    stretch[:, 0] = 0.5 * grid[:, 0]
    assert non_diffeomorphic_volume(stretch).tolist() == [0.0]
    # A reflection x -> -x (u = -2x): the eight one-sided determinants are -1 and the two of the J1*,
    # J2* tetrahedra -2, so each voxel adds 8 x 0.5 x 1 / 6 + 2 x 0.5 x 2 / 6 = 1: all of its volume.
    reflection = torch.zeros(1, 3, *shape, dtype=torch.float64)
    reflection[:, 0] = -2 * grid[:, 0]
    assert non_diffeomorphic_volume(reflection, interior).tolist() == [pytest.approx(100.0)]
    # The same reflection in the slab D = 0..3 only: its slices 1..2, whose neighbours are reflected too,
    # are wholly non-diffeomorphic; over the whole interior (slices 1..6) that is a third of the volume.
    slab = reflection.clone()
    slab[:, :, 4:] = 0
    inside = interior.clone()
    inside[:, 3:] = 0
    assert non_diffeomorphic_volume(slab, inside).tolist() == [pytest.approx(100.0)]
    assert non_diffeomorphic_volume(slab, interior).item() > 100.0 / 3
