from __future__ import annotations

import math

import pytest
import torch

from llamareg.metrics.overlap import dice_per_label, mean_dice


def cube(shape, low, high, label=1, dtype=torch.long):
    volume = torch.zeros(shape, dtype=dtype)
    volume[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = label
    return volume


def test_dice_of_shifted_cubes_is_exact():
    # 4^3 cubes overlapping in 4 x 4 x 3 voxels: 2 * 48 / (64 + 64).
    pred = cube((8, 8, 8), (2, 2, 2), (6, 6, 6))
    target = cube((8, 8, 8), (2, 2, 3), (6, 6, 7))
    assert dice_per_label(pred[None], target[None], [1]).tolist() == [[0.75]]
    assert dice_per_label(pred[None, None], target[None, None], [1]).tolist() == [[0.75]]


def test_dice_per_label_per_batch_item_with_nan_for_absent_labels():
    pred = cube((6, 6, 6), (0, 0, 0), (2, 2, 2), label=1) + cube((6, 6, 6), (3, 3, 3), (6, 6, 6), label=2)
    target = cube((6, 6, 6), (0, 0, 0), (2, 2, 1), label=1) + cube((6, 6, 6), (3, 3, 3), (6, 6, 6), label=3)
    scores = dice_per_label(torch.stack([pred, pred]), torch.stack([target, pred]), [1, 2, 3, 4])
    assert scores.shape == (2, 4) and scores.dtype == torch.float64
    first, second = scores.tolist()
    # label 1: 2 * 4 / (8 + 4); label 2 only in pred and label 3 only in target -> 0; label 4 nowhere -> NaN.
    assert first[:3] == [pytest.approx(2 / 3), 0.0, 0.0] and math.isnan(first[3])
    assert second[:2] == [1.0, 1.0] and math.isnan(second[2]) and math.isnan(second[3])
    assert mean_dice(torch.stack([pred, pred]), torch.stack([target, pred]), [1, 2, 3, 4]).tolist() == [
        pytest.approx(2 / 9),
        1.0,
    ]


def test_mean_dice_is_nan_when_no_label_is_present():
    empty = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    assert math.isnan(mean_dice(empty, empty, [1, 2]).item())


def test_dice_rejects_float_bool_and_mismatched_inputs():
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="integer label map"):
        dice_per_label(labels.float(), labels, [1])
    with pytest.raises(ValueError, match="integer label map"):
        dice_per_label(labels, labels.bool(), [1])
    with pytest.raises(ValueError, match="same shape"):
        dice_per_label(labels, torch.zeros(1, 4, 4, 5, dtype=torch.long), [1])
    with pytest.raises(ValueError, match=r"\(B, D, H, W\)"):
        dice_per_label(labels[0], labels[0], [1])
    with pytest.raises(ValueError, match="at least one label"):
        dice_per_label(labels, labels, [])
