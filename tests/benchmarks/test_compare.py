"""benchmarks/compare.py: seeds, test pairs of unseen anatomy, pooled statistics, reuse of finished runs."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from llamareg.config import load_config
from llamareg.data.shards import ShardSetWriter

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_comparison_writes_seeded_rows_and_pooled_comparisons(compare, tmp_path):
    out = tmp_path / "compare"
    assert compare.main(["--out", str(out), "--tiny", "--methods", "identity", "voxelmorph", "llamareg"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["pairs"].endswith("devtest/pairs.json") and results["seeds"] == 2
    assert {method: len(seeds) for method, seeds in results["scores"].items()} == {"identity": 1, "voxelmorph": 2, "llamareg": 2}
    assert [(row["a"], row["b"]) for row in results["comparisons"]] == [
        ("voxelmorph", "identity"),
        ("llamareg", "identity"),
        ("llamareg", "voxelmorph"),
    ]
    for row in results["comparisons"]:
        assert row["low"] <= row["mean"] <= row["high"] and 0 <= row["p_wilcoxon"] <= 1
        assert row["verdict"] in ("better", "worse", "no difference")
    rows = list(csv.DictReader(open(out / "pairs.csv")))
    assert len(rows) == 2 * (1 + 2 + 2) and all(0 < float(row["dice"]) <= 1 for row in rows)
    table = (out / "table.md").read_text()
    assert "| LLaMA-Reg, 1 step | 2 |" in table and "anatomy no training or validation pair used" in table
    # Each run's validation curve: four validations in 5 iterations (every 2, and the last), from the start.
    validation = results["validation_curves"]["llamareg"]["1"]
    curve = np.array(validation["curve"])
    assert curve[validation["kept_iteration"] == curve[:, 0], 1].max() == curve[:, 1].max()  # the best point was kept
    assert curve[:, 0].tolist() == [0, 2, 4, 5] and np.all((curve[:, 1] > 0) & (curve[:, 1] <= 1))
    assert "| LLaMA-Reg, 1 step | 1 | 0: " in table
    # Each seed trained its own run, and a rerun with the same settings reuses them instead of training again.
    checkpoint = out / "runs" / "llamareg" / "seed1" / "checkpoints" / "best.pt"
    stamp = checkpoint.stat().st_mtime_ns
    assert compare.main(["--out", str(out), "--tiny", "--methods", "identity", "llamareg"]) == 0
    assert checkpoint.stat().st_mtime_ns == stamp
    # A run recorded under another resolved config (a preset whose defaults changed since) trains again.
    result_file = checkpoint.parents[1] / "result.json"
    recorded = json.loads(result_file.read_text())
    recorded["settings"]["config"]["model"]["shared_encoder"] = not recorded["settings"]["config"]["model"]["shared_encoder"]
    result_file.write_text(json.dumps(recorded))
    assert compare.main(["--out", str(out), "--tiny", "--methods", "identity", "llamareg"]) == 0
    assert checkpoint.stat().st_mtime_ns != stamp
    first, second = (out / "runs" / "llamareg" / f"seed{k}" / "checkpoints" / "best.pt" for k in (0, 1))
    assert first.read_bytes() != second.read_bytes()  # two seeds, two initialisations


def test_budget_splits_over_schedule_phases(compare):
    assert compare.split_budget(150, compare.PHASE_SHARES["llamareg-3steps"]) == [90, 30, 30]
    assert compare.split_budget(150, compare.PHASE_SHARES["lapirn"]) == [38, 3, 35, 2, 72]
    assert sum(compare.split_budget(7, compare.PHASE_SHARES["lapirn"])) == 7
    with pytest.raises(ValueError, match="fewer than"):
        compare.split_budget(3, compare.PHASE_SHARES["lapirn"])
    config = load_config("cpu-lapirn", compare.method_overrides("lapirn", 150, 4, Path("/tmp/x/seed2"), 2, None))
    assert config.train.step_iters == [38, 3, 35, 2, 72] and config.train.seed == 2 and config.train.out == "/tmp/x/seed2"
    assert config.train.val_every == 18  # four validations in the longest phase, 72 iterations


def test_validation_curve_counts_iterations_from_the_run_s_start(compare):
    phases = [
        {"iterations": 4, "best_iteration": 4, "validation_curve": [[0, 0.5], [2, 0.6], [4, 0.7]]},
        {"iterations": 3, "best_iteration": 3, "validation_curve": [[0, 0.7], [3, 0.8]]},
    ]
    assert compare.validation_curve(phases) == {"curve": [[0, 0.5], [2, 0.6], [4, 0.7], [4, 0.7], [7, 0.8]], "kept_iteration": 7}


def test_a_shard_folder_is_scored_on_its_test_pairs_only(compare, tmp_path):
    writer = ShardSetWriter(tmp_path / "shards")
    for split, names in {"train": ["t0", "t1"], "val": ["v0", "v1"], "test": ["x0", "x1"]}.items():
        for key in names:
            writer.add(
                key,
                split,
                np.zeros((16, 16, 16), np.float32),
                np.zeros((16, 16, 16), np.int64),
                np.eye(4),
                {"image": tmp_path / f"{key}.nii.gz", "labels": None},
            )

    def pair(moving, fixed):
        return {
            "moving": tmp_path / f"{moving}.nii.gz",
            "fixed": tmp_path / f"{fixed}.nii.gz",
            "moving_labels": tmp_path / "l.nii.gz",
            "fixed_labels": tmp_path / "l.nii.gz",
        }

    writer.finish([pair("v0", "v1")], [pair("x0", "x1"), pair("x1", "x0")], {"layout": "test"})
    listed = compare.test_pairs(tmp_path / "out", 12, str(tmp_path / "shards"))
    assert listed == tmp_path / "shards" / "test_pairs.json"
    assert {Path(entry["moving"]).name for entry in json.loads(listed.read_text())} == {"x0.nii.gz", "x1.nii.gz"}
    (tmp_path / "shards" / "test_pairs.json").unlink()
    with pytest.raises(ValueError, match="has no test_pairs.json"):
        compare.test_pairs(tmp_path / "out", 12, str(tmp_path / "shards"))
