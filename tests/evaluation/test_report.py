"""Evaluation tables from known per-pair metrics."""

import csv
import io

import pytest

from llamareg.evaluation.pair_metrics import PairMetrics
from llamareg.evaluation.report import LABEL_COLUMNS, PairRecord, markdown_summary, per_label_csv, per_pair_csv, summarise


def _records():
    first = PairMetrics([1, 2], [0.8, 0.6], [0.7, 0.5], [2.0, float("nan")], [3.0, 4.0], 0.1, 0.3, 0.0, 1.5)
    second = PairMetrics([1, 2, 3], [0.9, 0.7, 0.2], [0.6, 0.6, 0.1], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0], 0.0, 0.5, 0.0, 2.5)
    return [PairRecord("f0.nii", "m0.nii", first), PairRecord("f1.nii", "m1.nii", second)]


def test_per_label_csv_has_a_row_per_pair_and_label():
    rows = list(csv.DictReader(io.StringIO(per_label_csv(_records()))))
    assert tuple(rows[0]) == LABEL_COLUMNS
    assert [(r["pair"], r["label"]) for r in rows] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2"), ("1", "3")]
    assert rows[1]["hd95_mm"] == ""  # undefined HD95 left empty
    assert float(rows[4]["dice"]) == pytest.approx(0.2)


def test_summary_means_and_standard_deviations_over_pairs():
    summary = summarise(_records())
    assert summary["pairs"] == 2
    assert summary["dice"]["mean"] == pytest.approx((0.7 + 0.6) / 2)
    assert summary["dice"]["std"] == pytest.approx(0.05)
    assert summary["hd95_mm"]["mean"] == pytest.approx((2.0 + 2.0) / 2)  # NaN labels skipped within a pair
    assert summary["dice_per_label"]["3"] == {"mean": pytest.approx(0.2), "std": 0.0}
    assert summary["seconds"]["mean"] == pytest.approx(2.0)
    # DSC30, as Learn2Reg's pandas quantile(.3) of the pairs' mean Dice: 0.6 + 0.3 x (0.7 - 0.6)
    assert summary["dice30"] == pytest.approx(0.63)
    pair_rows = list(csv.DictReader(io.StringIO(per_pair_csv(_records()))))
    assert float(pair_rows[0]["mean_dice"]) == pytest.approx(0.7) and float(pair_rows[1]["sdlogj_l2r"]) == pytest.approx(0.5)


def test_markdown_follows_table_1():
    text = markdown_summary(summarise(_records()), "LLaMA-Reg", "best.pt")
    lines = text.splitlines()
    assert "| Method | Dice (%) | % \\|J\\| ≤ 0 | SDlogJ (L2R) | HD95 (mm) | Time (s) |" in lines
    assert "| Initial | 51.67 ± 8.33 | - | - | 2.75 ± 0.75 | - |" in lines
    assert "| LLaMA-Reg | 65.00 ± 5.00 | 0.050 ± 0.050 | 0.400 ± 0.100 | 2.00 ± 0.00 | 2.00 ± 0.50 |" in lines
    assert "| 3 | 20.00 ± 0.00 |" in lines
    assert (
        "DSC30 (Learn2Reg: 30th percentile of the pairs' mean Dice): 63.00 %; NDV (LUMIR's non-diffeomorphic volume): 0.0000 ± 0.0000 %."
        in lines
    )


def test_undefined_metrics_show_as_a_dash():
    nan = float("nan")
    record = PairRecord("f.nii", "m.nii", PairMetrics([1], [0.5], [0.4], [nan], [nan], 0.0, 0.1, 0.0, 1.0))
    assert (
        "| LLaMA-Reg | 50.00 ± 0.00 | 0.000 ± 0.000 | 0.100 ± 0.000 | - | 1.00 ± 0.00 |"
        in markdown_summary(summarise([record]), "LLaMA-Reg", "best.pt").splitlines()
    )
