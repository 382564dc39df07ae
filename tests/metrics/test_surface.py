from __future__ import annotations

import math

import pytest
import torch

from llamareg.metrics.surface import hausdorff95


def cube_labels(shape, low, side, label=1):
    volume = torch.zeros(shape, dtype=torch.long)
    volume[tuple(slice(start, start + side) for start in low)] = label
    return volume[None]


@pytest.mark.parametrize("shift", [1, 2, 3])
@pytest.mark.parametrize("axis", [0, 2])
def test_hd95_of_shifted_cube_is_the_shift(axis, shift):
    low = [4, 4, 4]
    pred = cube_labels((16, 16, 16), low, side=6)
    low[axis] += shift
    target = cube_labels((16, 16, 16), low, side=6)
    assert hausdorff95(pred, target, [1]).tolist() == [[pytest.approx(shift)]]


def test_hd95_scales_with_spacing_along_the_shift():
    pred = cube_labels((14, 14, 14), (3, 3, 3), side=6)
    target = cube_labels((14, 14, 14), (3, 3, 5), side=6)
    assert hausdorff95(pred, target, [1], spacing=(1.5, 1.5, 1.5)).tolist() == [[pytest.approx(3.0)]]
    assert hausdorff95(pred, target, [1], spacing=(1.0, 1.0, 0.5)).tolist() == [[pytest.approx(1.0)]]


def test_hd95_of_identical_shapes_is_zero_and_missing_labels_are_nan():
    pred = cube_labels((10, 10, 10), (2, 2, 2), side=4, label=1) + cube_labels((10, 10, 10), (7, 7, 7), 2, label=2)
    target = cube_labels((10, 10, 10), (2, 2, 2), side=4, label=1)
    distances = hausdorff95(torch.cat([pred, pred]), torch.cat([target, pred]), [1, 2, 3])
    assert distances.shape == (2, 3)
    first, second = distances.tolist()
    assert first[0] == 0.0 and math.isnan(first[1]) and math.isnan(first[2])
    assert second[:2] == [0.0, 0.0] and math.isnan(second[2])


def test_hd95_ignores_the_farthest_five_percent_of_surface_points():
    # A single outlying voxel far away moves the maximum (Hausdorff) but not the 95th percentile.
    pred = cube_labels((20, 20, 20), (2, 2, 2), side=8)
    target = pred.clone()
    target[0, 18, 18, 18] = 1
    assert hausdorff95(pred, target, [1]).tolist() == [[0.0]]


def test_hd95_of_objects_touching_the_volume_border():
    pred = cube_labels((8, 8, 8), (0, 0, 0), side=4)
    target = cube_labels((8, 8, 8), (0, 0, 2), side=4)
    assert hausdorff95(pred, target, [1]).tolist() == [[pytest.approx(2.0)]]


def test_hd95_rejects_bad_spacing_and_float_labels():
    labels = cube_labels((6, 6, 6), (1, 1, 1), side=2)
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(labels, labels, [1], spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="integer label map"):
        hausdorff95(labels.float(), labels, [1])


def test_hd95_matches_a_full_volume_reference_on_random_shapes():
    import numpy as np
    from scipy import ndimage

    def reference(pred, target):
        surfaces = [region & ~ndimage.binary_erosion(region) for region in (pred, target)]
        directed = [ndimage.distance_transform_edt(~surfaces[1 - side], sampling=(1.0, 2.0, 0.7))[surfaces[side]] for side in (0, 1)]
        return max(np.percentile(distances, 95) for distances in directed)

    generator = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool3d(torch.rand(2, 1, 24, 24, 24, generator=generator), 5, 1, 2)
    labels = (smooth[:, 0] > 0.52).long() + (smooth[:, 0] > 0.56).long()
    pred, target = labels[:1], labels[1:]
    expected = [reference(pred[0].numpy() == label, target[0].numpy() == label) for label in (1, 2)]
    assert hausdorff95(pred, target, [1, 2], spacing=(1.0, 2.0, 0.7)).tolist() == [pytest.approx(expected)]
