"""``llamareg register`` sees the images at the training voxel size, whatever their field of view and
voxels; ``--spacing`` and ``--shape`` override it (an untrained tiny checkpoint: only the grid counts)."""

import json

import nibabel
import numpy as np
import pytest

from llamareg.cli import main
from llamareg.inference.grid import Grid, world_box


@pytest.fixture(scope="module")
def fine_pair(tmp_path_factory):
    """A fixed image of 70 x 50 x 40 voxels of 1.5 mm stored along (L, P, S), and a 2 mm RAS moving image."""
    folder = tmp_path_factory.mktemp("fine_pair")
    rng = np.random.default_rng(1)
    fixed_affine = np.diag([-1.5, -1.5, 1.5, 1.0])
    fixed_affine[:3, 3] = [50.0, 40.0, -20.0]
    moving_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    moving_affine[:3, 3] = [-54.0, -33.0, -20.0]
    for name, shape, affine in (("fixed", (70, 50, 40), fixed_affine), ("moving", (54, 38, 30), moving_affine)):
        nibabel.save(nibabel.Nifti1Image(rng.random(shape).astype(np.float32), affine), folder / f"{name}.nii.gz")
    return folder


@pytest.mark.parametrize(
    "options, spacing, shape",
    [
        ([], 3.25, [32, 32, 16]),  # the training spacing over the 105 x 75 x 60 mm box: 33 x 24 x 19 voxels, to the nearest 16
        (["--spacing", "5"], 5.0, [16, 16, 16]),  # 21 x 15 x 12 voxels
        (["--shape", "48,32,32"], 3.25, [48, 32, 32]),  # pads the box about its centre
    ],
)
def test_the_model_grid_keeps_the_training_spacing_unless_told(checkpoints, fine_pair, tmp_path, options, spacing, shape):
    out = tmp_path / "out"
    argv = [
        "register",
        "--checkpoint",
        checkpoints / "valid.pt",
        fine_pair / "fixed.nii.gz",
        fine_pair / "moving.nii.gz",
        "--out",
        out,
        "--device",
        "cpu",
        *options,
    ]
    assert main([str(a) for a in argv]) == 0
    record = json.loads((out / "registration.json").read_text())["model_grid"]
    assert record["spacing_mm"] == spacing and record["shape"] == shape
    affine = np.asarray(record["affine"])
    np.testing.assert_allclose(affine[:3, :3], np.diag([spacing] * 3))  # isotropic, RAS
    fixed = nibabel.load(fine_pair / "fixed.nii.gz")
    fixed_low, fixed_high = world_box(Grid(fixed.shape, fixed.affine))
    low, high = world_box(Grid(tuple(shape), affine))
    np.testing.assert_allclose((low + high) / 2, (fixed_low + fixed_high) / 2, atol=1e-6)  # centred on the fixed box
    if "--shape" not in options:
        # Rounded to the nearest multiple of 16: the grid's sides are within 8 voxels of the box's.
        assert (np.abs((high - low) - (fixed_high - fixed_low)) <= 9 * spacing).all()
    assert nibabel.load(out / "displacement.nii.gz").shape == (*fixed.shape, 3)
