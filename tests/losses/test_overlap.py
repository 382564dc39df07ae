import pytest
import torch

from llamareg.losses.overlap import soft_dice_loss


def test_soft_dice_is_zero_for_matching_labels_and_falls_as_the_flow_corrects_a_shift():
    labels = torch.zeros(1, 1, 12, 12, 12, dtype=torch.long)
    labels[..., 3:8, 3:8, 3:8] = 1
    labels[..., 8:11, 2:6, 2:9] = 2
    shifted = labels.roll(2, dims=2)
    assert soft_dice_loss(labels, labels, torch.zeros(1, 3, 12, 12, 12)).item() == pytest.approx(0.0, abs=1e-6)
    zero = soft_dice_loss(labels, shifted, torch.zeros(1, 3, 12, 12, 12))
    correcting = torch.zeros(1, 3, 12, 12, 12)
    correcting[:, 0] = -2.0  # warped(x) = moving(x - 2): the moving labels move +2 along axis 0
    assert zero > 0.3
    # Not 0: the roll wraps two slices around, which no smooth shift undoes.
    assert soft_dice_loss(labels, shifted, correcting) < zero / 4


def test_soft_dice_rejects_float_labels():
    with pytest.raises(ValueError, match="integer"):
        soft_dice_loss(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 3, 4, 4, 4))
