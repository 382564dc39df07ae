"""Label-overlap loss: soft Dice between warped moving labels and fixed labels (SynthMorph's term)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llamareg.spatial.functional import warp


def one_hot_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, 1, D, H, W)`` integer labels ``0..num_classes-1`` as ``(B, num_classes, D, H, W)`` float32."""
    if labels.ndim != 5 or labels.shape[1] != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be an integer (B, 1, D, H, W) tensor, got {labels.dtype} {tuple(labels.shape)}")
    return F.one_hot(labels[:, 0], num_classes).permute(0, 4, 1, 2, 3).float()


def soft_dice_loss(moving_labels: torch.Tensor, fixed_labels: torch.Tensor, flow: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``1 - mean soft Dice`` of the moving labels' one-hot maps warped (linearly) by ``flow``.

    The one-hot maps are warped with trilinear interpolation, so the loss is differentiable in the
    flow; labels absent from both images are left out of the mean.

    Args:
        moving_labels: ``(B, 1, D, H, W)`` integer labels.
        fixed_labels: ``(B, 1, D, H, W)`` integer labels.
        flow: ``(B, 3, D, H, W)`` displacement in voxels.
        eps: smoothing of the ratio.

    Returns:
        Scalar in ``[0, 1]``; 0 when the warped labels match exactly.

    Example:
        >>> labels = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long); labels[..., 2:, :, :] = 1
        >>> round(soft_dice_loss(labels, labels, torch.zeros(1, 3, 4, 4, 4)).item(), 6)
        0.0
    """
    if moving_labels.shape != fixed_labels.shape:
        raise ValueError(f"moving labels {tuple(moving_labels.shape)} and fixed labels {tuple(fixed_labels.shape)} differ in shape")
    num_classes = int(torch.maximum(moving_labels.max(), fixed_labels.max())) + 1
    warped = warp(one_hot_labels(moving_labels, num_classes), flow.float())
    target = one_hot_labels(fixed_labels, num_classes)
    intersection = (warped * target).sum(dim=(2, 3, 4))
    total = warped.sum(dim=(2, 3, 4)) + target.sum(dim=(2, 3, 4))
    present = total > eps
    dice = (2 * intersection + eps) / (total + eps)
    return 1 - dice[present].mean()
