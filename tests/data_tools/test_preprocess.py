"""Preprocessing steps keep every voxel at its world position and give [0, 1] images and integer labels."""

import numpy as np
import pytest

from llamareg.data.preprocess import (
    Preprocessing,
    crop_or_pad,
    fitting_shape,
    normalize_intensity,
    planned_shape,
    preprocess_subject,
    remap_labels,
    reorient,
    resample,
)


def world(affine, index):
    return affine[:3, :3] @ np.asarray(index, dtype=float) + affine[:3, 3]


def test_reorient_lps_to_ras_keeps_world_positions(tools):
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    ras, affine = reorient(data, tools.lps_affine, "RAS")
    assert ras.shape == (3, 4, 5) and np.allclose(np.diag(affine)[:3], 1.5)
    assert np.array_equal(ras, data[::-1, ::-1, :])
    for index in [(0, 0, 0), (2, 1, 3)]:
        source = (2 - index[0], 3 - index[1], index[2])
        assert np.allclose(world(affine, index), world(tools.lps_affine, source))


def test_reorient_permutes_axes():
    swapped = np.array([[0, 2.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])  # voxel axis 0 runs along y
    data = np.zeros((3, 5, 7))
    ras, affine = reorient(data, swapped, "RAS")
    assert ras.shape == (5, 3, 7) and np.allclose(np.diag(affine)[:3], [2, 1, 1])


def test_resample_halves_spacing_over_the_same_field_of_view():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.random.default_rng(0).random((8, 6, 4)).astype(np.float32)
    fine, fine_affine = resample(data, affine, (1.0, 1.0, 1.0))
    assert fine.shape == (16, 12, 8)
    # The field of view's first edge (-1 mm) is unchanged: voxel centre -0.5 at 1 mm.
    assert np.allclose(world(fine_affine, (0, 0, 0)), [-0.5, -0.5, -0.5])
    labels = np.random.default_rng(1).integers(0, 4, (8, 6, 4))
    fine_labels, _ = resample(labels, affine, (1.0, 1.0, 1.0), labels=True)
    assert fine_labels.dtype == labels.dtype and set(np.unique(fine_labels)) <= {0, 1, 2, 3}
    assert np.array_equal(fine_labels[::2, ::2, ::2], labels)  # nearest neighbour: each source voxel's first child


def test_crop_or_pad_keeps_world_positions():
    data = np.arange(6 * 2 * 4, dtype=np.float32).reshape(6, 2, 4)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    out, out_affine = crop_or_pad(data, affine, (4, 4, 4))
    assert out.shape == (4, 4, 4)
    assert out[0, 1, 0] == data[1, 0, 0] and out[0, 0, 0] == 0  # cropped one row in x, padded one in y
    assert np.allclose(world(out_affine, (0, 1, 0)), world(affine, (1, 0, 0)))


def test_normalize_and_remap():
    image = np.concatenate([np.zeros(10), np.linspace(0, 100, 101), [1e6]])
    normalized = normalize_intensity(image, (0.5, 99.5))
    assert normalized.dtype == np.float32 and normalized.min() == 0 and normalized.max() == 1
    with pytest.raises(ValueError, match="constant"):
        normalize_intensity(np.ones(10), (0, 100))
    assert remap_labels(np.array([[0, 1], [2, 9]]), {2: 1, 9: 3}).tolist() == [[0, 0], [1, 3]]


def test_shape_planning_and_full_pipeline(tools):
    options = Preprocessing(spacing_mm=(3.0, 3.0, 3.0))
    assert planned_shape((20, 22, 18), tools.lps_affine, options) == (10, 11, 9)
    assert fitting_shape([(10, 11, 9), (17, 3, 16)]) == (32, 16, 16)
    image, labels = tools.subject_arrays(0)
    out_image, out_labels, affine = preprocess_subject(
        image.astype(np.float32), labels.astype(np.int64), tools.lps_affine, Preprocessing(shape=(32, 32, 32))
    )
    assert out_image.shape == out_labels.shape == (32, 32, 32) and out_labels.dtype == np.int64
    assert 0 <= out_image.min() and out_image.max() <= 1
    # Label 2's centre of mass stays at the same world position through reorientation and padding.
    before = world(tools.lps_affine, np.argwhere(labels == 2).mean(axis=0))
    after = world(affine, np.argwhere(out_labels == 2).mean(axis=0))
    assert np.allclose(before, after)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (32, 32, 30)}, "divisible by 16"),
        ({"orientation": "RRS"}, "three axis codes"),
        ({"spacing_mm": (1.0, 0.0, 1.0)}, "positive"),
        ({"clip_percentiles": (5.0, 5.0)}, "LOW < HIGH"),
        ({"label_map": {1: -1}}, ">= 0"),
    ],
)
def test_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing(**kwargs)
