"""``llamareg evaluate``: CSV, Markdown table, PNG figures and MLflow logging, from a trained checkpoint; pairs of a run's own
training or validation subjects are refused."""

import csv
import json
import os

import nibabel
import numpy as np
import pytest
from matplotlib.image import imread

from llamareg.cli import main
from llamareg.commands.evaluate import check_held_out
from llamareg.config import config_from_dict
from llamareg.data.shards import ShardSetWriter
from llamareg.data.pair_list import read_pair_list
from llamareg.training.checkpoint import read_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _check_png(path, min_bytes=5000):
    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > min_bytes
    pixels = imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0.01  # not blank


def test_evaluate_writes_tables_and_figures(trained_checkpoint, nifti_pairs, tmp_path):
    out = tmp_path / "evaluation"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained_checkpoint),
                "--pairs",
                str(nifti_pairs.pairs_json),
                "--out",
                str(out),
                "--figure-pairs",
                "0,3",
                "--jacobian",
            ]
        )
        == 0
    )
    rows = _rows(out / "metrics_per_label.csv")
    assert [(int(r["pair"]), int(r["label"])) for r in rows] == [(p, label) for p in range(8) for label in (1, 2)]
    for row in rows:
        assert 0 <= float(row["dice"]) <= 1 and 0 <= float(row["dice_identity"]) <= 1
        assert 0 <= float(row["hd95_mm"]) < 100
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 8
    # Every pair scores both labels, so the mean over pairs of per-pair means is the mean of the CSV.
    assert summary["dice"]["mean"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]), abs=1e-6)
    assert summary["dice_identity"]["mean"] == pytest.approx(np.mean([float(r["dice_identity"]) for r in rows]), abs=1e-6)
    assert summary["dice"]["mean"] > summary["dice_identity"]["mean"]
    pairs = _rows(out / "metrics_per_pair.csv")
    assert len(pairs) == 8
    for row in pairs:
        assert 0 <= float(row["folding_pct"]) < 5 and 0 < float(row["sdlogj_l2r"]) < 2 and float(row["seconds"]) > 0
    table = (out / "summary.md").read_text().splitlines()
    assert "| Method | Dice (%) | % \\|J\\| ≤ 0 | SDlogJ (L2R) | HD95 (mm) | Time (s) |" in table
    method_row = next(line for line in table if line.startswith("| LLaMA-Reg |"))
    assert f"{100 * summary['dice']['mean']:.2f} ± {100 * summary['dice']['std']:.2f}" in method_row
    assert any(line.startswith("| Initial |") for line in table)
    for name in ("dice_boxplot.png", "pair_0.png", "pair_3.png"):
        _check_png(out / name)
    assert sorted(p.name for p in out.iterdir()) == [
        "dice_boxplot.png",
        "jacobian",
        "metrics_per_label.csv",
        "metrics_per_pair.csv",
        "pair_0.png",
        "pair_3.png",
        "summary.json",
        "summary.md",
    ]
    for entry in nifti_pairs.entries:  # det J on each fixed grid: subjects of one population, so near 1 on average
        name = f"{entry['fixed'].removesuffix('.nii.gz')}__{entry['moving'].removesuffix('.nii.gz')}.nii.gz"
        determinant = nibabel.load(out / "jacobian" / name)
        assert determinant.shape == nibabel.load(nifti_pairs.folder / entry["fixed"]).shape
        assert 0.8 < determinant.get_fdata().mean() < 1.25 and determinant.get_fdata().std() > 0.01


def test_evaluate_logs_metrics_and_files_to_an_mlflow_run(trained_checkpoint, nifti_pairs, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("evaluation", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    absolute = [{key: str(nifti_pairs.folder / name) for key, name in entry.items()} for entry in nifti_pairs.entries[:2]]
    pairs_json = tmp_path / "two_pairs.json"
    pairs_json.write_text(json.dumps(absolute))
    out = tmp_path / "evaluation"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained_checkpoint),
                "--pairs",
                str(pairs_json),
                "--out",
                str(out),
                "--figure-pairs",
                "1",
                "--mlflow-run-id",
                run_id,
                "--tracking-uri",
                uri,
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    logged = client.get_run(run_id).data.metrics
    assert logged["eval_dice_mean"] == pytest.approx(summary["dice"]["mean"])
    assert logged["eval_folding_pct_mean"] == pytest.approx(summary["folding_pct"]["mean"])
    assert logged["eval_pairs"] == 2 and {"eval_dice_label_1", "eval_dice_label_2", "eval_seconds_mean"} <= set(logged)
    artifacts = {item.path for item in client.list_artifacts(run_id, "evaluation")}
    assert artifacts == {f"evaluation/{p.name}" for p in out.iterdir()}
    copy = tmp_path / "artifacts" / run_id / "artifacts" / "evaluation" / "summary.md"
    assert copy.read_text() == (out / "summary.md").read_text()


@pytest.mark.parametrize("kind, tolerance", [("lumir", 1e-3), ("l2r", 0.005)])
def test_challenge_export_reproduces_evaluates_dice_with_map_coordinates(
    kind, tolerance, trained_checkpoint, nifti_pairs, fixed_space, tmp_path
):
    import nibabel
    from scipy import ndimage

    from llamareg.export.challenge import export_name

    out, exported = tmp_path / "evaluation", tmp_path / kind
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained_checkpoint),
                "--pairs",
                str(nifti_pairs.pairs_json),
                "--out",
                str(out),
                "--export",
                kind,
                str(exported),
            ]
        )
        == 0
    )
    reported = [float(row["mean_dice"]) for row in _rows(out / "metrics_per_pair.csv")]
    scores = []
    for index, entry in enumerate(nifti_pairs.entries):
        fixed = nibabel.load(nifti_pairs.folder / entry["fixed_labels"])
        moving = nibabel.load(nifti_pairs.folder / entry["moving_labels"])
        path = exported / export_name(kind, entry["fixed"], entry["moving"], index)
        if kind == "lumir":
            image = nibabel.load(path)
            assert image.shape == (*fixed.shape, 3) and np.allclose(image.affine, fixed.affine)
            field = np.moveaxis(image.get_fdata(), -1, 0)
        else:
            half = np.load(path)["arr_0"]
            assert half.dtype == np.float16 and half.shape[0] == 3
            # the challenge zooms by 2; for odd sizes, to the fixed grid's size
            field = np.stack([ndimage.zoom(c.astype(np.float32), np.divide(fixed.shape, c.shape), order=2) for c in half])
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in fixed.shape], indexing="ij"))
        warped = ndimage.map_coordinates(np.asarray(moving.dataobj), grid + field, order=0, mode="grid-constant", cval=0)
        scores.append(fixed_space.mean_dice(warped, np.asarray(fixed.dataobj)))
    assert len(list(exported.glob("disp_*"))) == len(nifti_pairs.entries)
    assert np.abs(np.array(scores) - np.array(reported)).max() <= tolerance
    assert np.mean(reported) > np.mean([float(r["mean_dice_identity"]) for r in _rows(out / "metrics_per_pair.csv")])


def test_evaluate_refuses_pairs_of_the_runs_training_and_validation_subjects(checkpoints, images, tmp_path, capsys):
    """A run trained from a shard folder: its training and validation subjects' images are refused, its test pairs pass."""
    shards = tmp_path / "shards"
    writer = ShardSetWriter(shards)
    roles = {"moving": "train", "series4d": "train", "fixed_labels": "val", "moving_labels": "val", "fixed": "test", "flat2d": "test"}
    for name, split in roles.items():
        writer.add(
            name,
            split,
            np.zeros((16, 16, 16), np.float32),
            np.zeros((16, 16, 16), np.int64),
            np.eye(4),
            {"image": images / f"{name}.nii.gz", "labels": None},
        )

    def entry(moving, fixed):
        return {
            "moving": images / f"{moving}.nii.gz",
            "fixed": images / f"{fixed}.nii.gz",
            "moving_labels": images / "moving_labels.nii.gz",
            "fixed_labels": images / "fixed_labels.nii.gz",
        }

    writer.finish([entry("fixed_labels", "moving_labels")], [entry("flat2d", "fixed")], {"layout": "test"})
    payload = read_checkpoint(checkpoints / "valid.pt")
    payload["config"]["data"]["source"] = str(shards)
    checkpoint = save_checkpoint(payload, tmp_path / "run.pt")

    pairs_json = tmp_path / "pairs.json"  # the moving image named relative to the list, as evaluate resolves it
    pairs_json.write_text(
        json.dumps(
            [
                {
                    "fixed": str(images / "fixed.nii.gz"),
                    "moving": os.path.relpath(images / "moving.nii.gz", tmp_path),
                    "fixed_labels": str(images / "fixed_labels.nii.gz"),
                    "moving_labels": str(images / "moving_labels.nii.gz"),
                }
            ]
        )
    )
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--pairs", str(pairs_json), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --pairs {pairs_json} pair 0 uses moving, a training subject of the checkpoint's run (data.source={shards}); "
        f"evaluate on test pairs ({shards / 'test_pairs.json'})"
    )
    assert not out.exists()

    config = config_from_dict(payload["config"])
    validation = read_pair_list(shards / "val_pairs.json")
    with pytest.raises(ValueError, match="pair 0 uses fixed_labels, a validation subject"):
        check_held_out(shards / "val_pairs.json", validation, config)
    check_held_out(shards / "test_pairs.json", read_pair_list(shards / "test_pairs.json"), config)  # test pairs pass
