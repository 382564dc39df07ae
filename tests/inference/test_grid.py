"""Model grid, resampling and the mapping of model-grid displacements to world millimetres."""

import numpy as np
import pytest

from llamareg.inference.grid import Grid, displacement_to_world, model_grid, resample, sample_world


def _lps_permuted(ras_affine, shape):
    """The grid holding a RAS array stored as array.transpose(2, 1, 0)[::-1, ::-1, ::-1]-like (axes S, P, L)."""
    spacing = np.linalg.norm(ras_affine[:3, :3], axis=0)
    directions = np.zeros((3, 3))
    directions[:, 0] = [0, 0, -1]  # array axis 0 runs S -> I
    directions[:, 1] = [0, -1, 0]  # axis 1 runs A -> P
    directions[:, 2] = [-1, 0, 0]  # axis 2 runs R -> L
    new_spacing = spacing[[2, 1, 0]]
    affine = np.eye(4)
    affine[:3, :3] = directions * new_spacing
    last = ras_affine[:3, :3] @ (np.asarray(shape) - 1) + ras_affine[:3, 3]  # world of the RAS array's last voxel
    affine[:3, 3] = last
    return affine


def _ras_volume(shape=(16, 20, 12), spacing=(2.0, 3.0, 2.5)):
    rng = np.random.default_rng(0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    return rng.random(shape).astype(np.float32), affine


def test_model_grid_is_ras_and_covers_the_reference_box():
    data, affine = _ras_volume()
    reoriented = _lps_permuted(affine, data.shape)
    grid = model_grid(Grid(data.shape[::-1], reoriented), data.shape)
    np.testing.assert_allclose(grid.affine, affine, atol=1e-9)


def test_resample_of_a_reoriented_volume_onto_its_ras_grid_is_exact():
    data, affine = _ras_volume()
    stored = data.transpose(2, 1, 0)[::-1, ::-1, ::-1].copy()  # axes (S->I, A->P, R->L)
    reoriented = _lps_permuted(affine, data.shape)
    grid = model_grid(Grid(stored.shape, reoriented), data.shape)
    np.testing.assert_allclose(resample(stored, reoriented, grid, order=0), data)
    # Same spacing: linear resampling at voxel centres applies no smoothing and no interpolation.
    np.testing.assert_allclose(resample(stored, reoriented, grid, order=1), data, atol=1e-5)


def test_resample_smooths_before_downsampling():
    checker = (np.indices((32, 32, 32)).sum(axis=0) % 2).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = 0.5  # each coarse voxel centred on a 2x2x2 block of fine voxels
    out = resample(checker, np.eye(4), Grid((16, 16, 16), affine), order=1)
    assert np.abs(out[2:-2, 2:-2, 2:-2] - 0.5).max() < 0.1


def test_displacement_to_world_scales_voxels_to_mm_and_keeps_world_directions():
    data, affine = _ras_volume()
    grid = Grid(data.shape, affine)
    flow = np.zeros((3, *data.shape), dtype=np.float32)
    flow[0] = 1.0  # one model voxel along R
    flow[2] = -2.0  # two model voxels towards I
    stored_shape = data.shape[::-1]
    fixed = Grid(stored_shape, _lps_permuted(affine, data.shape))
    world = displacement_to_world(flow, grid, fixed)
    assert world.shape == (*stored_shape, 3)
    np.testing.assert_allclose(world[..., 0], 2.0, atol=1e-5)
    np.testing.assert_allclose(world[..., 1], 0.0, atol=1e-5)
    np.testing.assert_allclose(world[..., 2], -5.0, atol=1e-5)


def test_sample_world_reads_voxel_centres_and_fills_outside():
    data, affine = _ras_volume()
    grid = Grid(data.shape, affine)
    points = grid.world_points()
    np.testing.assert_allclose(sample_world(data, affine, points, order=1), data, atol=1e-6)
    far = points + 1e4
    assert (sample_world(data, affine, far, order=1, cval=-7.0) == -7.0).all()


@pytest.mark.parametrize("order", [0, 1])
def test_resample_outside_the_source_is_cval(order):
    data, affine = _ras_volume()
    shifted = affine.copy()
    shifted[:3, 3] += 1e4
    assert (resample(data, affine, Grid((4, 4, 4), shifted), order=order, cval=3.0) == 3.0).all()
