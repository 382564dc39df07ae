"""LapIRN's level-by-level schedule end to end (tiny): phases, frozen coarser levels, per-phase configs,
``--step`` then ``--resume``, and one MLflow child run per phase."""

import json

import mlflow
import torch

from llamareg.commands.train import run
from llamareg.training.checkpoint import read_checkpoint
from llamareg.training.schedule import plan_phases

PHASES = ["level1", "level2-warmup", "level2", "level3-warmup", "level3"]


def _level(state, index):
    return {k: v for k, v in state.items() if k.startswith(f"levels.{index}.")}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lapirn_schedule_runs_level_by_level_resumes_and_tracks_each_phase(preset_runs, tmp_path):
    config = preset_runs.tiny("cpu-lapirn", tmp_path, "train.step_iters=[2, 1, 2, 1, 2]", "train.val_every=2", "tracking.enabled=true")
    trains = [
        (p.run_name, p.declared.trains["lapirn_levels"], p.declared.trains["lapirn_coarser_frozen"], p.iterations)
        for p in plan_phases(config)
    ]
    assert trains == [
        ("level1", 1, True, 2),
        ("level2-warmup", 2, True, 1),
        ("level2", 2, False, 2),
        ("level3-warmup", 3, True, 1),
        ("level3", 3, False, 2),
    ]

    # Phase 1 only (--step 1), then --resume finishes the schedule without rerunning it.
    first = run(config, step=1)
    assert [entry["step"] for entry in first["steps"]] == [1]
    level1_metrics = (tmp_path / "level1" / "metrics.json").read_text()
    metrics = run(config, resume=True)
    assert [entry["step"] for entry in metrics["steps"]] == [1, 2, 3, 4, 5]
    assert [entry["iterations"] for entry in metrics["steps"]] == [2, 1, 2, 1, 2]
    assert (tmp_path / "level1" / "metrics.json").read_text() == level1_metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["schedule"] == "lapirn"

    best = {name: read_checkpoint(tmp_path / name / "checkpoints" / "best.pt") for name in PHASES}
    last = {name: read_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in PHASES}
    # Each phase's config is a self-contained one-phase LapIRN: its active levels and their scale weights.
    for name, levels, weights in (("level1", 1, [1.0]), ("level2-warmup", 2, [0.0, 1.0]), ("level3", 3, [0.0, 0.0, 1.0])):
        saved = best[name]["config"]
        assert saved["model"]["sizes"]["active_levels"] == levels and saved["train"]["scale_weights"] == weights
    # Warm-ups keep the coarser levels frozen (bit-identical to the previous phase's best) and train the new one;
    # the joint phases train the coarser levels too.
    for warmup, previous, new in (("level2-warmup", "level1", 1), ("level3-warmup", "level2", 2)):
        for coarser in range(new):
            assert _same(_level(last[warmup]["model"], coarser), _level(best[previous]["model"], coarser))
        assert not _same(_level(last[warmup]["model"], new), _level(best[previous]["model"], new))
    for joint, warmup in (("level2", "level2-warmup"), ("level3", "level3-warmup")):
        assert not _same(_level(last[joint]["model"], 0), _level(best[warmup]["model"], 0))
    # The final model is the last phase's best: all three levels.
    final = read_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert final["config"]["model"]["sizes"]["active_levels"] == 3
    assert _same(final["model"], best["level3"]["model"])
    model, _, _ = preset_runs.reload(tmp_path / "checkpoints" / "best.pt")
    assert model.active_levels == 3

    # One MLflow run with a child run per phase, the first kept across --step/--resume.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("llamareg")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"cpu-lapirn", *PHASES}
    parent = runs["cpu-lapirn"]
    assert parent.data.params["model.architecture"] == "lapirn" and parent.data.tags["architecture"] == "lapirn"
    assert "llm_source" not in parent.data.tags
    for index, name in enumerate(PHASES, start=1):
        child = runs[name]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
        assert child.data.params["phase"] == str(index)
        assert child.data.params["lapirn_levels"] == str((index + 2) // 2)  # 1, 2, 2, 3, 3
    assert runs["level2-warmup"].data.params["lapirn_coarser_frozen"] == "true"
    assert runs["level2"].data.params["lapirn_coarser_frozen"] == "false"
