"""Model grid, pyramid levels, resampling and the mapping of model-grid displacements to world millimetres."""

import numpy as np
import pytest

from llamareg.inference.grid import (
    Grid,
    displacement_to_world,
    grid_options,
    level_grid,
    model_grid,
    parse_shape,
    resample,
    sample_world,
    world_box,
)


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
    """A random RAS volume; its default grid is anisotropic and not a multiple of 16."""
    rng = np.random.default_rng(0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    return rng.random(shape).astype(np.float32), affine


def test_model_grid_is_ras_and_covers_the_reference_box():
    data, affine = _ras_volume(shape=(16, 32, 16), spacing=(2.0, 2.0, 2.0))
    reoriented = _lps_permuted(affine, data.shape)
    grid = model_grid(Grid(data.shape[::-1], reoriented), 2.0)
    assert grid.shape == data.shape
    np.testing.assert_allclose(grid.affine, affine, atol=1e-9)


def test_model_grid_keeps_the_spacing_and_rounds_the_box_to_the_nearest_multiples_of_16_about_its_centre():
    data, affine = _ras_volume()  # box 32 x 60 x 30 mm, anisotropic voxels
    reference = Grid(data.shape[::-1], _lps_permuted(affine, data.shape))
    low, high = world_box(reference)
    grid = model_grid(reference, 1.5)
    assert grid.shape == (16, 48, 16)  # ceil(21.3, 40, 20) = 22, 40, 20 to the nearest multiples of 16
    np.testing.assert_allclose(grid.spacing, 1.5)
    grid_low, grid_high = world_box(grid)
    np.testing.assert_allclose((grid_low + grid_high) / 2, (low + high) / 2, atol=1e-9)
    # The 40-voxel side gains 4 voxels (6 mm) at each end; the 22- and 20-voxel sides lose 4 mm and 3 mm at each end.
    np.testing.assert_allclose(low - grid_low, [-4.0, 6.0, -3.0], atol=1e-9)
    np.testing.assert_allclose(grid_high - high, [-4.0, 6.0, -3.0], atol=1e-9)
    cropped = model_grid(reference, 1.5, shape=(16, 16, 16))
    np.testing.assert_allclose(sum(world_box(cropped)) / 2, (low + high) / 2, atol=1e-9)
    assert world_box(cropped)[1][1] - world_box(cropped)[0][1] == pytest.approx(24.0)
    # 197 x 233 x 189 mm at 3.25 mm: 61 x 72 x 59 voxels -> 64 x 80 x 64 (72 is 4.5 multiples: halves go up).
    assert model_grid(Grid((197, 233, 189), np.eye(4)), 3.25).shape == (64, 80, 64)
    # A box of exactly 48 voxels stays 48, whatever floating-point noise says.
    assert model_grid(Grid((48, 64, 48), np.diag([3.25, 3.25, 3.25, 1.0])), 3.25).shape == (48, 64, 48)
    # A box smaller than one multiple still gets one.
    assert model_grid(Grid((5, 5, 5), np.eye(4)), 1.0).shape == (16, 16, 16)


def test_level_grid_voxels_tile_the_reference_voxels():
    reference = Grid((7, 4, 5), _lps_permuted(np.diag([1.0, 2.0, 3.0, 1.0]), (5, 4, 7)))
    coarse = level_grid(reference, 2)
    assert coarse.shape == (4, 2, 3)
    np.testing.assert_allclose(coarse.spacing, 2 * np.asarray(reference.spacing))
    # Coarse voxel i is centred between reference voxels 2i and 2i + 1.
    np.testing.assert_allclose(coarse.world_points()[1, 0, 1], reference.world_points()[2:4, 0:2, 2:4].mean(axis=(0, 1, 2)))


@pytest.mark.parametrize(
    "spacing, shape, culprit",
    [
        ("0", None, "--spacing"),
        ("-2", None, "--spacing"),
        ("inf", None, "--spacing"),
        ("abc", None, "--spacing"),
        (None, ["64", "80"], "--shape"),
        (None, ["64,80,60"], "--shape"),
        (None, ["0", "16", "16"], "--shape"),
        (None, ["a,b,c"], "--shape"),
    ],
)
def test_bad_grid_options_name_the_option(spacing, shape, culprit):
    with pytest.raises(ValueError, match=culprit) as raised:
        grid_options(spacing, shape)
    assert "\n" not in str(raised.value)


def test_grid_options_accept_both_shape_spellings():
    assert grid_options("2.5", ["64", "80", "64"]) == (2.5, (64, 80, 64))
    assert grid_options(None, ["64,80,64"]) == (None, (64, 80, 64)) and parse_shape("16, 32, 48") == (16, 32, 48)


def test_resample_of_a_reoriented_volume_onto_its_ras_grid_is_exact():
    data, affine = _ras_volume(shape=(16, 32, 16), spacing=(2.0, 2.0, 2.0))
    stored = data.transpose(2, 1, 0)[::-1, ::-1, ::-1].copy()  # axes (S->I, A->P, R->L)
    reoriented = _lps_permuted(affine, data.shape)
    grid = model_grid(Grid(stored.shape, reoriented), 2.0)
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
