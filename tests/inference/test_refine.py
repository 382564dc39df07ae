"""Instance optimisation, coarse to fine up to the fixed image's own grid: it lowers the training
objective on every level, moves labels onto their counterparts, and never returns a worse field."""

import numpy as np
import pytest
import torch

from llamareg.config import load_config
from llamareg.inference.grid import Grid, displacement_to_world, level_grid, model_grid, sample_world
from llamareg.inference.refine import (
    MovingSampler,
    diffusion_with_gradient,
    pair_objective,
    pyramid_factors,
    refine_displacement,
    split_steps,
    upsample_field,
)
from llamareg.losses.regularization import diffusion
from llamareg.training.objective import MultiScaleObjective

SHIFT_MM = np.array([3.0, -2.0, 1.5])  # the fixed image's point p is the moving image's p + SHIFT_MM


def _phantom(points):
    """Two ellipsoids in world mm: labels (1, 2) and a soft-edged intensity image on a dim background."""
    first = (((points - [-8.0, 4.0, 0.0]) / [12.0, 9.0, 10.0]) ** 2).sum(-1)
    second = (((points - [10.0, -6.0, 2.0]) / [8.0, 10.0, 7.0]) ** 2).sum(-1)
    labels = np.where(first < 1, 1, np.where(second < 1, 2, 0))
    soft = lambda r: 1 / (1 + np.exp((np.sqrt(r) - 1) * 12))
    image = 0.1 + 0.5 * soft(first) + 0.9 * soft(second)
    return image.astype(np.float32), labels


def _pair():
    """Fixed: RAS 1.5 mm 40^3. Moving: the phantom moved by SHIFT_MM, stored with axes (S, P, L) at 2 mm."""
    fixed_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    fixed_affine[:3, 3] = -29.25
    fixed_grid = Grid((40, 40, 40), fixed_affine)
    moving_affine = np.zeros((4, 4))
    moving_affine[:3, :3] = [[0, 0, -2.0], [0, -2.0, 0], [2.0, 0, 0]]
    moving_affine[:, 3] = [29.0, 29.0, -29.0, 1.0]
    moving_grid = Grid((30, 30, 30), moving_affine)
    fixed, fixed_labels = _phantom(fixed_grid.world_points())
    moving, moving_labels = _phantom(moving_grid.world_points() - SHIFT_MM)
    return fixed, fixed_labels, fixed_grid, moving, moving_labels, moving_affine


def _mean_dice(a, b):
    return np.mean([2 * np.sum((a == k) & (b == k)) / (np.sum(a == k) + np.sum(b == k)) for k in (1, 2)])


@pytest.mark.parametrize("similarity", ["mse", "ncc"])
def test_refinement_lowers_the_objective_on_every_level_and_raises_dice(similarity):
    fixed, fixed_labels, fixed_grid, moving, moving_labels, moving_affine = _pair()
    model = model_grid(fixed_grid, 3.25)
    objective = pair_objective(load_config("cpu-default", [f"train.similarity={similarity}", "train.reg_weight=0.1"]))
    start = np.zeros((3, *model.shape), np.float32)
    result = refine_displacement(fixed, fixed_grid, moving, moving_affine, start, model, objective, steps=60, lr=0.1)
    # 1.5 mm fixed voxels, 3.25 mm model grid: levels at 3 and 1.5 mm (6 mm would be coarser than the model).
    assert [level.shape for level in result.levels] == [(20, 20, 20), (40, 40, 40)]
    assert [level.steps for level in result.levels] == [40, 20] and result.steps == 60
    for level in result.levels:
        assert level.loss_after < level.loss_before - 1e-4, level
    assert result.displacement.shape == (40, 40, 40, 3) and result.displacement.dtype == np.float32
    points = fixed_grid.world_points()
    before = _mean_dice(sample_world(moving_labels, moving_affine, points, order=0), fixed_labels)
    after = _mean_dice(sample_world(moving_labels, moving_affine, points + result.displacement, order=0), fixed_labels)
    assert after > before + 0.1 and after > 0.85, (before, after)
    mean = result.displacement[fixed_labels > 0].mean(axis=0)  # where the images constrain the field
    assert mean @ SHIFT_MM > 0.9 * np.linalg.norm(mean) * np.linalg.norm(SHIFT_MM), mean  # along the shift


def test_a_network_field_is_the_start_and_a_too_large_step_keeps_it():
    fixed, _, fixed_grid, moving, _, moving_affine = _pair()
    model = model_grid(fixed_grid, 3.25)
    flow = np.zeros((3, *model.shape), np.float32)
    flow[0] = SHIFT_MM[0] / 3.25  # model voxels along R
    result = refine_displacement(
        fixed, fixed_grid, moving, moving_affine, flow, model, MultiScaleObjective("mse", 1.0, [1.0]), steps=3, lr=1e3
    )
    for level in result.levels:
        assert level.loss_after == level.loss_before
    np.testing.assert_allclose(result.displacement, displacement_to_world(flow, model, fixed_grid), atol=1e-4)


def test_moving_sampler_reads_the_moving_voxels_at_world_points():
    fixed, _, fixed_grid, moving, _, moving_affine = _pair()
    level = level_grid(fixed_grid, 1)
    field = torch.zeros(1, *level.shape, 3)
    field[..., 1] = 0.7  # 1.05 mm along A
    sampled = MovingSampler(moving, moving_affine, level)(field)[0, 0].numpy()
    expected = sample_world(moving, moving_affine, level.world_points() + [0.0, 1.05, 0.0], order=1)
    np.testing.assert_allclose(sampled, expected, atol=1e-4)


def test_diffusion_with_gradient_matches_autograd():
    field = torch.randn(1, 5, 6, 7, 3, dtype=torch.float64, requires_grad=True)
    reference = diffusion(field.permute(0, 4, 1, 2, 3))
    reference.backward()
    value, gradient = diffusion_with_gradient(field.detach())
    assert value == pytest.approx(reference.item(), rel=1e-10)
    torch.testing.assert_close(gradient, field.grad)


def test_levels_steps_and_upsampling():
    one_mm = Grid((160, 192, 160), np.eye(4))
    assert pyramid_factors(one_mm, coarsest_mm=3.25) == [2, 1]
    assert pyramid_factors(one_mm, coarsest_mm=5.0) == [4, 2, 1]
    assert pyramid_factors(one_mm, coarsest_mm=3.25, max_voxels=1_000_000) == [2]  # capped: 2 mm, then interpolated
    assert pyramid_factors(Grid((40, 40, 40), np.diag([4.0, 4.0, 4.0, 1.0])), coarsest_mm=3.25) == [1]
    assert split_steps(100, 2) == [67, 33] and split_steps(7, 3) == [4, 2, 1] and sum(split_steps(101, 3)) == 101
    # A constant field of 1 coarse voxel is 2 fine voxels everywhere, cropped to the fine shape.
    upsampled = upsample_field(torch.ones(1, 3, 2, 2, 3), 2, (5, 4, 4))
    assert upsampled.shape == (1, 5, 4, 4, 3) and torch.all(upsampled == 2)


@pytest.mark.parametrize("steps, lr", [(0, 0.1), (2, 0.0), (-1, 0.1)])
def test_bad_options(steps, lr):
    fixed, _, fixed_grid, moving, _, moving_affine = _pair()
    with pytest.raises(ValueError):
        refine_displacement(
            fixed, fixed_grid, moving, moving_affine, np.zeros((3, 4, 4, 4)), fixed_grid, MultiScaleObjective("mse", 0.0, [1.0]), steps, lr
        )
