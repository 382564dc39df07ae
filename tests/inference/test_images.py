"""Reading volumes: each bad file gives one ValueError/FileNotFoundError line that names it."""

import nibabel
import numpy as np
import pytest

from llamareg.inference.images import check_same_grid, normalise_intensities, open_volume, read_intensities, read_labels


def _save(path, data, affine=None):
    nibabel.save(nibabel.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
    return path


def _message(error):
    text = str(error.value)
    assert "\n" not in text
    return text


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        open_volume(tmp_path / "absent.nii.gz", "fixed image")
    assert "fixed image" in _message(error) and "absent.nii.gz" in _message(error)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_text("not an image")
    with pytest.raises(ValueError) as error:
        open_volume(path, "moving image")
    assert "notes.nii.gz" in _message(error) and "NIfTI" in _message(error)


def test_truncated_file(tmp_path):
    path = _save(tmp_path / "cut.nii.gz", np.random.default_rng(0).random((16, 16, 16)).astype(np.float32))
    path.write_bytes(path.read_bytes()[:2000])
    image = open_volume(path, "fixed image")  # the header is intact
    with pytest.raises(ValueError) as error:
        read_intensities(image, path, "fixed image")
    assert "cut.nii.gz" in _message(error) and "truncated" in _message(error)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 8, 2), (8, 8, 1)])
def test_not_a_3d_volume(tmp_path, shape):
    path = _save(tmp_path / "bad.nii.gz", np.zeros(shape, np.float32))
    with pytest.raises(ValueError) as error:
        open_volume(path, "fixed image")
    assert "bad.nii.gz" in _message(error) and "3D" in _message(error)


def test_a_trailing_singleton_axis_is_a_3d_volume(tmp_path):
    path = _save(tmp_path / "frame.nii.gz", np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8, 1))
    volume = read_intensities(open_volume(path, "fixed image"), path, "fixed image")
    assert volume.shape == (8, 8, 8)


def test_labels_on_another_grid(tmp_path):
    image = _save(tmp_path / "image.nii.gz", np.zeros((8, 8, 8), np.float32))
    smaller = _save(tmp_path / "small_labels.nii.gz", np.zeros((8, 8, 7), np.int16))
    moved = _save(tmp_path / "moved_labels.nii.gz", np.zeros((8, 8, 8), np.int16), np.diag([2.0, 1, 1, 1]))
    for labels in (smaller, moved):
        with pytest.raises(ValueError) as error:
            check_same_grid(open_volume(labels, "moving labels"), labels, open_volume(image, "moving image"), image, "moving labels")
        assert labels.name in _message(error) and "image.nii.gz" in _message(error)


def test_labels_must_be_whole_numbers(tmp_path):
    path = _save(tmp_path / "soft.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    with pytest.raises(ValueError) as error:
        read_labels(open_volume(path, "fixed labels"), path, "fixed labels")
    assert "soft.nii.gz" in _message(error)
    whole = _save(tmp_path / "whole.nii.gz", np.full((4, 4, 4), 2.0, np.float32))
    assert read_labels(open_volume(whole, "fixed labels"), whole, "fixed labels").data.dtype == np.int64


@pytest.mark.parametrize("value", [np.nan, None])
def test_intensities_must_be_finite_and_not_constant(tmp_path, value):
    data = np.ones((4, 4, 4), np.float32)
    if value is not None:
        data[0, 0, 0] = value
    path = _save(tmp_path / "flat.nii.gz", data)
    with pytest.raises(ValueError) as error:
        read_intensities(open_volume(path, "moving image"), path, "moving image")
    assert "flat.nii.gz" in _message(error)


def test_normalise_maps_percentiles_to_unit_range():
    data = np.random.default_rng(0).normal(100.0, 20.0, (16, 16, 16)).astype(np.float32)
    out = normalise_intensities(data)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert 0.005 - 1e-3 < (out == 1.0).mean() < 0.005 + 1e-3
