"""Validation: Dice of warped labels, identity Dice, folding and SDlogJ over fixed pairs."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from llamareg.metrics.jacobian import folding_percentage, sd_log_jacobian
from llamareg.metrics.overlap import dice_per_label
from llamareg.spatial.functional import warp
from llamareg.training.precision import Precision


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def foreground_labels(*label_maps: torch.Tensor) -> list[int]:
    """Label ids present in any of the maps, background (0) excluded."""
    ids = set()
    for labels in label_maps:
        ids.update(int(v) for v in torch.unique(labels).tolist())
    ids.discard(0)
    return sorted(ids)


@torch.no_grad()
def evaluate(model: nn.Module, pairs: Iterable[dict], device: torch.device, precision: Precision) -> dict[str, object]:
    """Register every pair and summarise the overlap and regularity metrics.

    Returns:
        ``dice`` (mean over pairs of the mean foreground Dice after registration), ``dice_identity``
        (the same before registration), ``dice_per_label`` ({label: mean Dice}), ``folding_pct``
        (mean % of voxels with det J <= 0), ``sdlogj`` and ``pairs``.
    """
    was_training = model.training
    model.eval()
    dice, identity, folding, sdlogj = [], [], [], []
    per_label: dict[int, list[float]] = {}
    for batch in pairs:
        moving, fixed = batch["moving"].to(device), batch["fixed"].to(device)
        moving_labels, fixed_labels = batch["moving_labels"].to(device), batch["fixed_labels"].to(device)
        with precision.autocast():
            flow = model(moving, fixed)["flows"][-1].float()
        labels = foreground_labels(moving_labels, fixed_labels)
        warped_labels = warp(moving_labels, flow, mode="nearest")
        after = dice_per_label(warped_labels, fixed_labels, labels)
        before = dice_per_label(moving_labels, fixed_labels, labels)
        for row_after, row_before in zip(after.tolist(), before.tolist()):
            dice.append(_nanmean(row_after))
            identity.append(_nanmean(row_before))
            for label, value in zip(labels, row_after):
                per_label.setdefault(label, []).append(value)
        folding.extend(folding_percentage(flow).tolist())
        sdlogj.extend(sd_log_jacobian(flow).tolist())
    model.train(was_training)
    return {
        "dice": _nanmean(dice),
        "dice_identity": _nanmean(identity),
        "dice_per_label": {str(label): _nanmean(values) for label, values in sorted(per_label.items())},
        "folding_pct": _nanmean(folding),
        "sdlogj": _nanmean(sdlogj),
        "pairs": len(dice),
    }
