"""Evaluation tables: CSV rows per pair and label, a summary, and the paper's Table 1 in Markdown."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llamareg.atomic import atomic_output
from llamareg.evaluation.pair_metrics import PairMetrics

LABEL_COLUMNS = ("pair", "fixed", "moving", "label", "dice", "dice_identity", "hd95_mm", "hd95_identity_mm")
PAIR_COLUMNS = (
    "pair",
    "fixed",
    "moving",
    "mean_dice",
    "mean_dice_identity",
    "mean_hd95_mm",
    "folding_pct",
    "sdlogj_l2r",
    "ndv_pct",
    "seconds",
)
# Learn2Reg's robustness figure: the 30th percentile (linear interpolation, pandas' quantile) of the
# cases' mean Dice, as MDL-UzL/L2R evaluation/evaluation.py aggregates it ("30": quantile(.3)).
ROBUSTNESS_QUANTILE = 0.3


@dataclass(frozen=True)
class PairRecord:
    """A pair's metrics with the names of its files."""

    fixed: str
    moving: str
    metrics: PairMetrics


def _csv_text(columns: Sequence[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else (f"{v:.6g}" if isinstance(v, float) else v) for v in row])
    return buffer.getvalue()


def per_label_csv(records: Sequence[PairRecord]) -> str:
    """One row per pair and label (columns :data:`LABEL_COLUMNS`; an undefined HD95 is left empty)."""
    rows = []
    for index, record in enumerate(records):
        m = record.metrics
        for label, dice, identity, hd95, hd95_identity in zip(m.labels, m.dice, m.dice_identity, m.hd95, m.hd95_identity):
            rows.append([index, record.fixed, record.moving, label, dice, identity, hd95, hd95_identity])
    return _csv_text(LABEL_COLUMNS, rows)


def per_pair_csv(records: Sequence[PairRecord]) -> str:
    """One row per pair (columns :data:`PAIR_COLUMNS`)."""
    rows = [
        [
            index,
            r.fixed,
            r.moving,
            r.metrics.mean_dice,
            r.metrics.mean_dice_identity,
            r.metrics.mean_hd95,
            r.metrics.folding_pct,
            r.metrics.sdlogj_l2r,
            r.metrics.ndv_pct,
            r.metrics.seconds,
        ]
        for index, r in enumerate(records)
    ]
    return _csv_text(PAIR_COLUMNS, rows)


def _stats(values: Sequence[float]) -> dict[str, float]:
    kept = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if not kept.size:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(kept.mean()), "std": float(kept.std())}


def summarise(records: Sequence[PairRecord]) -> dict:
    """Means and (population) standard deviations over pairs of each pair's metrics.

    Returns:
        ``{"pairs", "dice", "dice_identity", "hd95_mm", "hd95_identity_mm", "folding_pct", "sdlogj_l2r",
        "ndv_pct", "seconds"}`` each (but ``pairs``) a ``{"mean", "std"}`` dict, ``dice30`` (Learn2Reg's
        DSC30: the 30th percentile of the pairs' mean Dice) and ``dice_per_label`` (``{label: {"mean",
        "std"}}``, over the pairs where the label occurs).
    """
    metrics = [record.metrics for record in records]
    per_label: dict[int, list[float]] = {}
    for m in metrics:
        for label, dice in zip(m.labels, m.dice):
            per_label.setdefault(label, []).append(dice)
    return {
        "pairs": len(metrics),
        "dice": _stats([m.mean_dice for m in metrics]),
        "dice_identity": _stats([m.mean_dice_identity for m in metrics]),
        "hd95_mm": _stats([m.mean_hd95 for m in metrics]),
        "hd95_identity_mm": _stats([m.mean_hd95_identity for m in metrics]),
        "folding_pct": _stats([m.folding_pct for m in metrics]),
        "sdlogj_l2r": _stats([m.sdlogj_l2r for m in metrics]),
        "ndv_pct": _stats([m.ndv_pct for m in metrics]),
        "dice30": dice30([m.mean_dice for m in metrics]),
        "seconds": _stats([m.seconds for m in metrics]),
        "dice_per_label": {str(label): _stats(values) for label, values in sorted(per_label.items())},
    }


def dice30(mean_dice: Sequence[float]) -> float:
    """Learn2Reg's DSC30 of the pairs' mean Dice (NaN values left out; NaN if none is left).

    Example:
        >>> round(dice30([0.5, 0.6, 0.7, 0.8]), 4)  # position 0.3 x 3 = 0.9 between 0.5 and 0.6
        0.59
    """
    kept = [value for value in mean_dice if not math.isnan(value)]
    return float(np.quantile(kept, ROBUSTNESS_QUANTILE)) if kept else float("nan")


def _cell(stats: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    if math.isnan(stats["mean"]):
        return "-"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def markdown_summary(summary: dict, method: str, checkpoint: str) -> str:
    """The paper's Table 1 layout (a row per method; Dice, % |J| <= 0, SDlogJ, HD95, seconds per pair),
    with the unregistered pairs as the "Initial" row, then mean Dice per label."""
    lines = [
        f"# Evaluation of {checkpoint}",
        "",
        f"{summary['pairs']} pairs; mean ± standard deviation over pairs.",
        "",
        "| Method | Dice (%) | % \\|J\\| ≤ 0 | SDlogJ (L2R) | HD95 (mm) | Time (s) |",
        "|---|---|---|---|---|---|",
        f"| Initial | {_cell(summary['dice_identity'], 100)} | - | - | {_cell(summary['hd95_identity_mm'])} | - |",
        f"| {method} | {_cell(summary['dice'], 100)} | {_cell(summary['folding_pct'], digits=3)} | "
        f"{_cell(summary['sdlogj_l2r'], digits=3)} | {_cell(summary['hd95_mm'])} | {_cell(summary['seconds'])} |",
        "",
        f"DSC30 (Learn2Reg: 30th percentile of the pairs' mean Dice): {100 * summary['dice30']:.2f} %; "
        f"NDV (LUMIR's non-diffeomorphic volume): {_cell(summary['ndv_pct'], digits=4)} %.",
        "",
        "| Label | Dice (%) |",
        "|---|---|",
        *[f"| {label} | {_cell(stats, 100)} |" for label, stats in summary["dice_per_label"].items()],
    ]
    return "\n".join(lines) + "\n"


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(text)
    return Path(path)
