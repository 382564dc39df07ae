"""Affine pre-alignment, ITK text transforms, inverse fields and Jacobian maps (library level)."""

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from llamareg.data.mni152 import load_mni152
from llamareg.inference.affine import AffineTransform, affine_levels, estimate_affine
from llamareg.inference.fields import invert_displacement, jacobian_determinant_map, sample_field
from llamareg.inference.grid import Grid
from llamareg.inference.images import NiftiVolume
from llamareg.inference.itk import read_displacement, read_itk_affine, write_itk_affine
from llamareg.inference.outputs import displacement_image, save_nifti
from llamareg.inference.transforms import SavedTransform, warp_volume

SPACING = 3.25


@pytest.fixture(scope="module")
def template():
    volume = load_mni152((48, 64, 48), SPACING)
    affine = volume.affine.numpy().astype(np.float64)
    image = NiftiVolume(volume.image[0].numpy().astype(np.float32), affine, nibabel.Nifti1Header(), "mni152")
    labels = NiftiVolume(volume.labels[0].numpy().astype(np.int64), affine, nibabel.Nifti1Header(), "mni152 labels")
    return image, labels


def test_affine_of_a_header_move_is_recovered_to_a_fraction_of_a_voxel(template, affine_case):
    fixed, _ = template
    truth = affine_case.transform()
    moving = NiftiVolume(fixed.data, truth.homogeneous @ fixed.affine, fixed.header, "moved")
    found = estimate_affine(fixed, moving, "mse")
    assert affine_case.corner_error(found.transform, truth, Grid(fixed.shape, fixed.affine)) < 0.25 * SPACING
    assert found.levels[0]["loss_after"] < 0.1 * found.levels[0]["loss_before"]


def test_rigid_keeps_a_rotation_and_recovers_one(template, affine_case):
    fixed, _ = template
    truth = affine_case.transform(scale=1.0)
    moving = NiftiVolume(fixed.data, truth.homogeneous @ fixed.affine, fixed.header, "moved")
    found = estimate_affine(fixed, moving, "mse", rigid=True)
    np.testing.assert_allclose(found.transform.matrix @ found.transform.matrix.T, np.eye(3), atol=1e-9)
    assert affine_case.corner_error(found.transform, truth, Grid(fixed.shape, fixed.affine)) < 0.5 * SPACING


def test_an_image_aligned_to_itself_stays_put(template, affine_case):
    fixed, _ = template
    found = estimate_affine(fixed, fixed, "ncc", steps=(40, 20, 10))
    assert affine_case.corner_error(found.transform, AffineTransform.identity(), Grid(fixed.shape, fixed.affine)) < 0.2 * SPACING


def test_levels_coarsen_large_images_and_steps_are_checked(template):
    fixed, _ = template
    assert [level.spacing[0] for level in affine_levels(Grid(fixed.shape, fixed.affine))] == [4 * SPACING, 2 * SPACING, SPACING]
    with pytest.raises(ValueError, match="steps must be 3"):
        estimate_affine(fixed, fixed, steps=(10, 10))


def test_simpleitk_applies_the_written_transform_as_we_do(template, tmp_path, affine_case):
    fixed, _ = template
    truth = affine_case.transform()
    moving = NiftiVolume(np.ascontiguousarray(fixed.data[::-1]), fixed.affine @ np.diag([-1.0, 1, 1, 1]), fixed.header, "flipped")
    moving.affine[0, 3] = fixed.affine[0, 3] + (fixed.shape[0] - 1) * SPACING  # same world box, stored with axis 0 reversed
    for name, volume in (("fixed", fixed), ("moving", moving)):
        nibabel.save(nibabel.Nifti1Image(volume.data, volume.affine), tmp_path / f"{name}.nii.gz")
    write_itk_affine(truth, tmp_path / "affine.txt")
    transform = sitk.ReadTransform(str(tmp_path / "affine.txt"))
    reference, source = (sitk.ReadImage(str(tmp_path / f"{name}.nii.gz")) for name in ("fixed", "moving"))
    by_itk = sitk.GetArrayFromImage(sitk.Resample(source, reference, transform, sitk.sitkLinear, 0.0)).transpose(2, 1, 0)
    points = truth.apply(Grid(fixed.shape, fixed.affine).world_points())
    ours = warp_volume(moving, points, labels=False)
    # Compared where both interpolate: ITK takes its default value half a voxel earlier at the image's faces.
    voxels = (points - moving.affine[:3, 3]) @ np.linalg.inv(moving.affine[:3, :3]).T
    inside = np.all((voxels >= 0) & (voxels <= np.array(moving.shape) - 1), axis=-1)
    assert inside.mean() > 0.5
    assert np.abs(by_itk - ours)[inside].max() < 1e-4 * np.abs(ours).max()
    assert np.abs(ours - fixed.data).mean() > 0.05  # the transform moved the image: the comparison means something


def test_itk_files_written_by_itk_with_a_centre_are_read_alike(tmp_path):
    itk_affine = sitk.AffineTransform(3)
    itk_affine.SetMatrix([1.05, 0.1, 0.0, -0.08, 0.97, 0.02, 0.0, 0.03, 1.1])
    itk_affine.SetTranslation([3.0, -4.0, 7.5])
    itk_affine.SetCenter([10.0, -20.0, 30.0])
    sitk.WriteTransform(itk_affine, str(tmp_path / "itk.txt"))
    ours = read_itk_affine(tmp_path / "itk.txt")
    point_ras = np.array([12.0, -5.0, 40.0])
    lps = np.array(itk_affine.TransformPoint(tuple(point_ras * [-1, -1, 1])))
    np.testing.assert_allclose(ours.apply(point_ras), lps * [-1, -1, 1], atol=1e-9)
    write_itk_affine(ours, tmp_path / "again.txt")
    again = read_itk_affine(tmp_path / "again.txt")
    np.testing.assert_allclose(again.homogeneous, ours.homogeneous, atol=1e-12)


def test_bad_transform_files_are_named(tmp_path):
    (tmp_path / "bspline.txt").write_text("#Insight Transform File V1.0\nTransform: BSplineTransform_double_3_3\nParameters: 1\n")
    with pytest.raises(ValueError, match="bspline.txt is not a 3D affine ITK text transform"):
        read_itk_affine(tmp_path / "bspline.txt")
    with pytest.raises(FileNotFoundError, match="--affine .*missing.txt does not exist"):
        read_itk_affine(tmp_path / "missing.txt")


def test_inverse_field_composes_to_identity(template, affine_case):
    fixed, _ = template
    grid = Grid(fixed.shape, fixed.affine)
    field = affine_case.transform().displacement_on(grid) + affine_case.smooth_field(grid, 4.0)
    moving_grid = Grid((56, 72, 56), affine_case.transform().homogeneous @ fixed.affine)  # the moving image's own grid
    inverse = invert_displacement(field, grid, moving_grid)
    # q -> p = q + v(q) -> p + d(p) must be q again wherever p falls inside the fixed grid.
    points = moving_grid.world_points()
    back = points + inverse.displacement
    voxels = (back - grid.affine[:3, 3]) @ np.linalg.inv(grid.affine[:3, :3]).T
    inside = np.all((voxels >= 0) & (voxels <= np.array(grid.shape) - 1), axis=-1)
    error_voxels = np.linalg.norm(back + sample_field(field, grid, back) - points, axis=-1)[inside] / SPACING
    assert inside.mean() > 0.3 and error_voxels.max() < 0.5
    assert inverse.residual_mm < 0.01
    found, residual = SavedTransform(field, grid).fixed_points(moving_grid)
    np.testing.assert_allclose(found, back, atol=1e-3)
    assert residual < 0.01


def test_jacobian_map_of_a_scaling_is_the_volume_ratio(template, affine_case):
    fixed, labels = template
    grid = Grid(fixed.shape, fixed.affine)
    determinant = jacobian_determinant_map(affine_case.transform().displacement_on(grid) + affine_case.smooth_field(grid, 1.0), grid)
    assert abs(determinant[labels.data > 0].mean() / 1.1**3 - 1) < 0.01
    assert determinant.shape == fixed.shape and determinant.dtype == np.float32


def test_itk_displacement_images_read_back_in_ras(template, tmp_path, affine_case):
    fixed, _ = template
    field = affine_case.smooth_field(Grid(fixed.shape, fixed.affine), 2.0)
    save_nifti(displacement_image(field, fixed, itk=True), tmp_path / "itk.nii.gz")
    save_nifti(displacement_image(field, fixed), tmp_path / "ras.nii.gz")
    for name in ("itk.nii.gz", "ras.nii.gz"):
        read, grid = read_displacement(tmp_path / name)
        np.testing.assert_array_equal(read, field)
        np.testing.assert_allclose(grid.affine, fixed.affine, atol=1e-5)
