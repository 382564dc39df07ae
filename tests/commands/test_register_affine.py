"""``llamareg register --affine`` on a brain moved by a known affine, ``llamareg warp`` on its outputs.

The fixed image is the MNI152 template at 3.25 mm (grey and white matter labels). The moving image is
the same brain moved by a 15 degree rotation, a 20 mm translation and a 10 % scaling: once through its
header alone (the same voxels), once resampled onto a grid of its own with a smooth warp added that has
no linear part. Registered with the shipped pretrained model.
"""

import json

import nibabel
import numpy as np
import pytest
from scipy import ndimage

from llamareg.cli import main
from llamareg.data.mni152 import load_mni152
from llamareg.inference.grid import Grid
from llamareg.inference.itk import read_itk_affine

pytestmark = pytest.mark.slow
SPACING = 3.25  # mm, the template's voxels


def mean_dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([2 * np.sum((a == k) & (b == k)) / (np.sum(a == k) + np.sum(b == k)) for k in (1, 2)]))


def _save(data, affine, path):
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    return str(path)


@pytest.fixture(scope="module")
def brains(tmp_path_factory, affine_case):
    """fixed(.nii.gz, _labels) and the two moved versions: by_header and resampled (with a smooth warp)."""
    folder = tmp_path_factory.mktemp("brains")
    template = load_mni152((48, 64, 48), SPACING)
    affine = template.affine.numpy().astype(np.float64)
    image, labels = template.image[0].numpy().astype(np.float32), template.labels[0].numpy().astype(np.uint8)
    truth = affine_case.transform()
    _save(image, affine, folder / "fixed.nii.gz")
    _save(labels, affine, folder / "fixed_labels.nii.gz")
    _save(image, truth.homogeneous @ affine, folder / "by_header.nii.gz")
    _save(labels, truth.homogeneous @ affine, folder / "by_header_labels.nii.gz")
    # Resampled: the moving voxel at q shows the fixed point p with T(p) = q + w(q), w smooth and without a linear part.
    moving_grid = Grid((64, 80, 64), affine.copy())
    moving_grid.affine[:3, 3] -= SPACING * np.array([8, 8, 8])  # a larger box around the fixed one
    warp = affine_case.smooth_field(moving_grid, 4.0)
    points = moving_grid.world_points()
    # Remove the warp's least-squares affine part over the brain (where the similarity sees it).
    source_voxels = np.linalg.solve(affine[:3, :3], (truth.inverse().apply(points) - affine[:3, 3]).reshape(-1, 3).T)
    brain = ndimage.map_coordinates(labels, source_voxels.reshape(3, *points.shape[:3]), order=0) > 0
    design = np.concatenate([points[brain], np.ones((brain.sum(), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, warp[brain], rcond=None)
    warp = (warp - np.concatenate([points, np.ones((*points.shape[:3], 1))], axis=-1) @ solution).astype(np.float32)
    source = truth.inverse().apply(points + warp)
    voxels = np.moveaxis((source - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T, -1, 0)
    _save(ndimage.map_coordinates(image, voxels, order=1).astype(np.float32), moving_grid.affine, folder / "resampled.nii.gz")
    _save(ndimage.map_coordinates(labels, voxels, order=0).astype(np.uint8), moving_grid.affine, folder / "resampled_labels.nii.gz")
    return folder, truth, labels


def _register(folder, moving, out, *options):
    assert (
        main(
            [
                "register",
                str(folder / "fixed.nii.gz"),
                str(folder / f"{moving}.nii.gz"),
                "--moving-labels",
                str(folder / f"{moving}_labels.nii.gz"),
                "--out",
                str(out),
                *options,
            ]
        )
        == 0
    )
    return np.asarray(nibabel.load(out / "warped_labels.nii.gz").dataobj)


@pytest.mark.parametrize("moving", ["by_header", "resampled"])
def test_affine_prealignment_recovers_the_affine_and_beats_deformable_alone(brains, moving, tmp_path, affine_case):
    folder, truth, labels = brains
    without = mean_dice(_register(folder, moving, tmp_path / "deformable"), labels)
    with_affine = mean_dice(_register(folder, moving, tmp_path / "affine", "--affine", "--jacobian"), labels)
    assert with_affine >= without + 0.05, (without, with_affine)
    found = read_itk_affine(tmp_path / "affine" / "affine.txt")
    fixed = nibabel.load(folder / "fixed.nii.gz")
    assert affine_case.corner_error(found, truth, Grid(fixed.shape, fixed.affine)) < SPACING
    record = json.loads((tmp_path / "affine" / "registration.json").read_text())
    assert record["prealignment"]["file"] == "affine.txt" and record["pair_index"] == 0
    if moving == "by_header":  # a pure scaling of 1.1: the moving volume per fixed volume is 1.331 in the brain
        determinant = nibabel.load(tmp_path / "affine" / "jacobian.nii.gz").get_fdata()
        assert abs(determinant[labels > 0].mean() / 1.1**3 - 1) < 0.01


def test_warp_reproduces_register_and_inverts_it(brains, tmp_path):
    folder, truth, labels = brains
    out = tmp_path / "reg"
    _register(folder, "resampled", out, "--affine", "--inverse")
    for name, extra in (("warped.nii.gz", []), ("warped_labels.nii.gz", ["--labels"])):
        source = "resampled_labels.nii.gz" if extra else "resampled.nii.gz"
        assert main(["warp", str(folder / source), "--registration", str(out), "--out", str(tmp_path / name), *extra]) == 0
        again, written = nibabel.load(tmp_path / name), nibabel.load(out / name)
        np.testing.assert_array_equal(np.asarray(again.dataobj), np.asarray(written.dataobj))
        np.testing.assert_array_equal(again.affine, written.affine)
    # The other way: the fixed labels onto the moving grid match the moving labels as well as forward does.
    assert (
        main(
            [
                "warp",
                str(folder / "fixed_labels.nii.gz"),
                "--registration",
                str(out),
                "--inverse",
                "--labels",
                "--out",
                str(tmp_path / "fixed_on_moving.nii.gz"),
            ]
        )
        == 0
    )
    moving_labels = np.asarray(nibabel.load(folder / "resampled_labels.nii.gz").dataobj)
    backward = np.asarray(nibabel.load(tmp_path / "fixed_on_moving.nii.gz").dataobj)
    forward = mean_dice(np.asarray(nibabel.load(out / "warped_labels.nii.gz").dataobj), labels)
    assert mean_dice(backward, moving_labels) > forward - 0.05
    record = json.loads((out / "registration.json").read_text())
    assert record["inverse"]["residual_mm"] < 0.5 * SPACING
    inverse = nibabel.load(out / "inverse_displacement.nii.gz")
    np.testing.assert_array_equal(inverse.affine, nibabel.load(folder / "resampled.nii.gz").affine)


def test_warp_applies_an_itk_affine_alone_and_checks_its_inputs(brains, tmp_path, capsys):
    folder, truth, _ = brains
    from llamareg.inference.itk import write_itk_affine

    write_itk_affine(truth, tmp_path / "truth.txt")
    out = tmp_path / "aligned.nii.gz"
    assert (
        main(
            [
                "warp",
                str(folder / "by_header_labels.nii.gz"),
                "--affine",
                str(tmp_path / "truth.txt"),
                "--labels",
                "--reference",
                str(folder / "fixed.nii.gz"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    fixed_labels = np.asarray(nibabel.load(folder / "fixed_labels.nii.gz").dataobj)
    assert mean_dice(np.asarray(nibabel.load(out).dataobj), fixed_labels) > 0.99  # the header move undone exactly
    capsys.readouterr()
    assert main(["warp", str(folder / "fixed.nii.gz"), "--affine", str(tmp_path / "truth.txt"), "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "--affine alone needs --reference FIXED" in capsys.readouterr().err
    assert (
        main(
            [
                "warp",
                str(folder / "fixed.nii.gz"),
                "--affine",
                str(tmp_path / "truth.txt"),
                "--reference",
                str(folder / "fixed.nii.gz"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()
