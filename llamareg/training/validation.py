"""Validation: Dice of warped labels, identity Dice, folding and SDlogJ over fixed pairs."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from llamareg.metrics.jacobian import folding_percentage, sdlogj_l2r
from llamareg.metrics.overlap import dice_per_label, foreground_labels, nanmean
from llamareg.spatial.functional import warp
from llamareg.training.precision import Precision
from llamareg.training.selection import pair_identity


@torch.no_grad()
def evaluate_pairs(
    model: nn.Module, pairs: Iterable[dict], device: torch.device, precision: Precision, input_dtype: torch.dtype = torch.float32
) -> list[dict[str, object]]:
    """Register every pair; one record per pair: ``dice``, ``dice_identity``, ``dice_per_label``,
    ``folding_pct`` and ``sdlogj_l2r`` (what :func:`summarize` averages; ranks gather these records),
    and ``pair``, the pair's identity (:func:`~llamareg.training.selection.pair_identity`; None for items
    without ``moving_name``/``fixed_name``).

    Args:
        input_dtype: The dtype the model takes (half or bfloat16 for a DeepSpeed fp16/bf16 model).
    """
    was_training = model.training
    model.eval()
    records = []
    for batch in pairs:
        moving, fixed = batch["moving"].to(device, input_dtype), batch["fixed"].to(device, input_dtype)
        moving_labels, fixed_labels = batch["moving_labels"].to(device), batch["fixed_labels"].to(device)
        with precision.autocast():
            outputs = model(moving, fixed)
        # The full-resolution field: the finest flow, or (LapIRN training a coarser level) it upsampled.
        flow = outputs.get("full_flow", outputs["flows"][-1]).float()
        labels = foreground_labels(moving_labels, fixed_labels)
        warped_labels = warp(moving_labels, flow, mode="nearest")
        after = dice_per_label(warped_labels, fixed_labels, labels).tolist()
        before = dice_per_label(moving_labels, fixed_labels, labels).tolist()
        folding, sdlogj = folding_percentage(flow).tolist(), sdlogj_l2r(flow).tolist()
        moving_names, fixed_names = batch.get("moving_name"), batch.get("fixed_name")
        for index in range(len(after)):
            records.append(
                {
                    "pair": None if moving_names is None or fixed_names is None else pair_identity(moving_names[index], fixed_names[index]),
                    "dice": nanmean(after[index]),
                    "dice_identity": nanmean(before[index]),
                    "dice_per_label": dict(zip(labels, after[index])),
                    "folding_pct": folding[index],
                    "sdlogj_l2r": sdlogj[index],
                }
            )
    model.train(was_training)
    return records


def summarize(records: list[dict[str, object]]) -> dict[str, object]:
    """Means over pairs: ``dice`` (of each pair's mean foreground Dice after registration),
    ``dice_identity`` (the same before registration), ``dice_per_label`` ({label: mean Dice}),
    ``folding_pct`` (% of voxels with det J <= 0), ``sdlogj_l2r`` and the number of ``pairs``."""
    per_label: dict[int, list[float]] = {}
    for record in records:
        for label, value in record["dice_per_label"].items():
            per_label.setdefault(label, []).append(value)
    return {
        "dice": nanmean([r["dice"] for r in records]),
        "dice_identity": nanmean([r["dice_identity"] for r in records]),
        "dice_per_label": {str(label): nanmean(values) for label, values in sorted(per_label.items())},
        "folding_pct": nanmean([r["folding_pct"] for r in records]),
        "sdlogj_l2r": nanmean([r["sdlogj_l2r"] for r in records]),
        "pairs": len(records),
    }


def evaluate(model: nn.Module, pairs: Iterable[dict], device: torch.device, precision: Precision) -> dict[str, object]:
    """Register every pair and summarise the overlap and regularity metrics (see :func:`summarize`)."""
    return summarize(evaluate_pairs(model, pairs, device, precision))
