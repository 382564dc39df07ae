"""Label overlap metrics on integer label maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def validate_label_maps(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two label maps and return them as ``(B, D, H, W)``.

    Args:
        pred: ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` integer labels.
        target: same shape and kind as ``pred``.

    Returns:
        ``(pred, target)`` without the channel axis.
    """
    for name, labels in (("pred", pred), ("target", target)):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer label map, got dtype {labels.dtype}; cast it with .long()")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.ndim == 5 and pred.shape[1] == 1:
        return pred[:, 0], target[:, 0]
    if pred.ndim != 4:
        raise ValueError(f"label maps must be (B, D, H, W) or (B, 1, D, H, W), got {tuple(pred.shape)}")
    return pred, target


def _check_labels(labels: Sequence[int]) -> list[int]:
    labels = [int(label) for label in labels]
    if not labels:
        raise ValueError("labels must name at least one label value")
    return labels


def dice_per_label(pred: torch.Tensor, target: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """Dice overlap ``2|P & T| / (|P| + |T|)`` for each label and batch item.

    A label absent from both volumes has no defined overlap and gives NaN, so ``nanmean`` skips it;
    a label present in only one volume gives 0.

    Args:
        pred: ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` integer labels (e.g. warped moving labels).
        target: integer labels of the same shape (e.g. fixed labels).
        labels: label values to score (background is usually left out).

    Returns:
        ``(B, L)`` float64 tensor.

    Example:
        >>> pred = torch.tensor([[[[1, 1, 0, 0]]]]); target = torch.tensor([[[[1, 0, 0, 0]]]])
        >>> dice_per_label(pred, target, [1, 2]).tolist()
        [[0.6666666666666666, nan]]
    """
    pred, target = validate_label_maps(pred, target)
    labels = _check_labels(labels)
    scores = []
    for label in labels:
        in_pred = (pred == label).flatten(1)
        in_target = (target == label).flatten(1)
        intersection = (in_pred & in_target).sum(dim=1).double()
        total = (in_pred.sum(dim=1) + in_target.sum(dim=1)).double()
        # 0 / 0 -> NaN for a label missing from both volumes, as documented.
        scores.append(2 * intersection / total)
    return torch.stack(scores, dim=1)


def mean_dice(pred: torch.Tensor, target: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """Mean Dice over the labels present in either volume (NaN labels skipped).

    Returns:
        ``(B,)`` float64 tensor; NaN for an item where no label is present at all.

    Example:
        >>> pred = torch.tensor([[[[1, 1, 2, 2]]]]); target = torch.tensor([[[[1, 1, 0, 0]]]])
        >>> mean_dice(pred, target, [1, 2, 3]).tolist()
        [0.5]
    """
    return torch.nanmean(dice_per_label(pred, target, labels), dim=1)


def foreground_labels(*label_maps: torch.Tensor) -> list[int]:
    """Label ids present in any of the maps, background (0) excluded."""
    ids = set()
    for labels in label_maps:
        ids.update(int(v) for v in torch.unique(labels).tolist())
    ids.discard(0)
    return sorted(ids)


def nanmean(values: Sequence[float]) -> float:
    """The mean of the values that are not NaN (NaN when none is): a label absent from both maps of a
    pair has no Dice, and averages leave it out.

    Example:
        >>> nanmean([0.5, float("nan"), 0.7])
        0.6
    """
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")
