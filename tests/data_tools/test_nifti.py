"""Reading NIfTI images and label maps: values, affines, and one-line errors naming the file."""

import gzip

import numpy as np
import pytest

from llamareg.data.nifti import read_image, read_label_map, read_subject, write_nifti


def test_image_and_labels_read_back(tmp_path, tools):
    image, labels = tools.subject_arrays(0)
    tools.save(tmp_path / "image.nii.gz", image)
    tools.save(tmp_path / "labels.nii", labels[..., None])  # a trailing singleton axis is squeezed
    read, affine = read_image(tmp_path / "image.nii.gz")
    assert read.dtype == np.float32 and np.array_equal(read, image) and np.array_equal(affine, tools.lps_affine)
    label_map, _ = read_label_map(tmp_path / "labels.nii")
    assert label_map.dtype == np.int64 and np.array_equal(label_map, labels)


def test_write_nifti_round_trips_int64_labels(tmp_path, tools):
    labels = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    write_nifti(tmp_path / "labels.nii.gz", labels, tools.lps_affine)
    read, affine = read_label_map(tmp_path / "labels.nii.gz")
    assert np.array_equal(read, labels) and np.array_equal(affine, tools.lps_affine)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'absent.nii.gz'} does not exist"):
        read_image(tmp_path / "absent.nii.gz")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-gzip"])
def test_corrupt_file_is_named(damage, tmp_path, tools):
    path = tools.save(tmp_path / "scan.nii.gz", tools.subject_arrays(0)[0])
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "garbage":
        path.write_bytes(gzip.compress(b"\x00" * 100))
    else:
        data = bytearray(path.read_bytes())
        data[200:260] = b"\xff" * 60
        path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{path} is not a readable NIfTI file") as error:
        read_image(path)
    assert "\n" not in str(error.value)


def test_four_d_nan_and_non_integer_labels(tmp_path, tools):
    tools.save(tmp_path / "4d.nii.gz", np.zeros((4, 4, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"4d.nii.gz holds a 4D array of shape \(4, 4, 4, 2\)"):
        read_image(tmp_path / "4d.nii.gz")
    tools.save(tmp_path / "nan.nii.gz", np.full((4, 4, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="nan.nii.gz holds 64 NaN or infinite voxels"):
        read_image(tmp_path / "nan.nii.gz")
    tools.save(tmp_path / "soft.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match="soft.nii.gz holds non-integer values"):
        read_label_map(tmp_path / "soft.nii.gz")
    tools.save(tmp_path / "whole.nii.gz", np.full((4, 4, 4), 2.0, np.float32))
    assert read_label_map(tmp_path / "whole.nii.gz")[0].max() == 2  # whole numbers stored as float are fine


def test_masks_merge_with_cartilage_over_bone(tmp_path, tools):
    image = tools.save(tmp_path / "image.nii.gz", np.ones((4, 4, 4), np.float32))
    bone = np.zeros((4, 4, 4), np.uint8)
    bone[:2] = 1
    cartilage = np.zeros((4, 4, 4), np.uint8)
    cartilage[1:3] = 1
    masks = {1: tools.save(tmp_path / "femur.nii.gz", bone), 2: tools.save(tmp_path / "cartilage.nii.gz", cartilage)}
    _, labels, _ = read_subject(image, label_masks=masks)
    assert labels[:, 0, 0].tolist() == [1, 2, 2, 0]
    _, unlabelled, _ = read_subject(image)
    assert not unlabelled.any()
