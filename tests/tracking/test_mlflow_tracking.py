"""MLflow tracking against real stores: sqlite files and an `mlflow server` on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest

from llamareg.commands.train import run
from llamareg.config import TrackingConfig
from llamareg.tracking import open_training_run, tracking_uri


def _runs(uri):
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("llamareg")
    return client, {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def _metric_steps(client, run_id, key):
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_cascade_run_is_a_parent_with_one_child_per_step(tiny_config, tmp_path):
    config = tiny_config("model.steps=2", "train.step_iters=[3, 2]", "train.val_every=3", "tracking.enabled=true")
    run(config)
    client, runs = _runs(f"sqlite:///{tmp_path}/mlflow.db")
    assert set(runs) == {"cpu-default", "step1", "step2"}
    parent = runs["cpu-default"]
    for name, iterations in (("step1", 3), ("step2", 2)):
        child = runs[name]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        # loss every iteration (log_every=1), validation at 0, every 3 iterations and at the end
        assert _metric_steps(client, child.info.run_id, "loss") == list(range(1, iterations + 1))
        assert _metric_steps(client, child.info.run_id, "val_dice") == sorted({0, *range(3, iterations + 1, 3), iterations})
        recorded = json.loads((tmp_path / name / "metrics.json").read_text())
        assert child.data.metrics["val_dice_best"] == pytest.approx(recorded["val_dice_best"])
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert artifacts == {"metrics.json", "training_curves.png"}
        curves = client.download_artifacts(child.info.run_id, "training_curves.png", str(tmp_path / "download" / name))
        assert open(curves, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert child.data.params["llm_layer_indices"] == "[29]"
    assert parent.data.params["llm.source"] == "smollm2-135m"
    assert parent.data.params["model.steps"] == "2"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"config.yaml", "metrics.json"}
    assert parent.data.tags["best_checkpoint"] == str((tmp_path / "checkpoints" / "best.pt").resolve())
    assert _metric_steps(client, parent.info.run_id, "val_dice_best") == [1, 2]


def test_resume_continues_the_same_runs(tiny_config, tmp_path):
    config = tiny_config("model.steps=2", "train.step_iters=[2, 2]", "tracking.enabled=true")
    run(config, step=1)
    recorded = json.loads((tmp_path / "mlflow_run.json").read_text())
    run(config, resume=True)
    client, runs = _runs(recorded["tracking_uri"])
    assert set(runs) == {"cpu-default", "step1", "step2"}  # no second parent, no second step 1
    assert runs["cpu-default"].info.run_id == recorded["run_id"]
    assert runs["cpu-default"].info.status == "FINISHED"


def test_environment_uri_is_used_and_other_ranks_log_nothing(tiny_config, tmp_path, monkeypatch):
    shared = tmp_path / "shared.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared}")
    assert tracking_uri(TrackingConfig(), tmp_path / "out") == f"sqlite:///{shared}"
    assert tracking_uri(TrackingConfig(uri="http://127.0.0.1:1"), tmp_path) == "http://127.0.0.1:1"
    monkeypatch.setenv("RANK", "1")
    run(tiny_config("train.max_iters=1", "tracking.enabled=true", out=tmp_path / "rank1"))
    assert not shared.exists() and not (tmp_path / "rank1" / "mlflow_run.json").exists()
    monkeypatch.setenv("RANK", "0")
    run(tiny_config("train.max_iters=1", "tracking.enabled=true", out=tmp_path / "rank0"))
    _, runs = _runs(f"sqlite:///{shared}")
    assert list(runs) == ["cpu-default"]


def test_unreachable_store_is_one_clear_error(tmp_path):
    bad = TrackingConfig(uri=f"sqlite:///{tmp_path}")  # a folder, not a database file
    with pytest.raises(ValueError, match="MLflow store sqlite:///.*cannot be opened.* is a folder; point tracking.uri at a file"):
        open_training_run(bad, tmp_path, "x", resume=False)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_mlflow_server_on_localhost_receives_a_run(tiny_config, tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "served"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError("mlflow server did not answer /health within 90 s")
                time.sleep(1)
        run(tiny_config("train.max_iters=2", "tracking.enabled=true", f"tracking.uri={uri}", out=tmp_path / "out"))
        client, runs = _runs(uri)
        served = runs["cpu-default"]
        assert _metric_steps(client, served.info.run_id, "loss") == [1, 2]
        assert "training_curves.png" in {a.path for a in client.list_artifacts(served.info.run_id)}
        assert any((tmp_path / "served").rglob("training_curves.png"))  # stored by the server, not locally
        assert not (tmp_path / "out" / "mlflow.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_run_left_running_by_a_killed_process_is_marked_killed_when_the_folder_is_reused(tmp_path):
    import mlflow

    settings = TrackingConfig(enabled=True)
    killed = open_training_run(settings, tmp_path, "first", resume=False)  # never finished: as after SIGKILL
    replacement = open_training_run(settings, tmp_path, "second", resume=False)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(settings, tmp_path))
    assert client.get_run(killed.run_id).info.status == "KILLED"
    assert client.get_run(replacement.run_id).info.status == "RUNNING"
    replacement.finish()
    assert client.get_run(replacement.run_id).info.status == "FINISHED"


def test_a_copied_run_folder_resumes_into_its_own_store_and_artifacts(tiny_config, tiny_overrides, tmp_path):
    import shutil

    original, copy = tmp_path / "original", tmp_path / "copy"
    run(tiny_config("train.max_iters=2", "tracking.enabled=true", "tracking.log_checkpoint=true", out=original))
    shutil.copytree(original, copy)
    before = {path: path.stat().st_mtime_ns for path in (original / "mlartifacts").rglob("*") if path.is_file()}
    # A new process, as a user resumes (MLflow caches a run's artifact store per process).
    resumed = subprocess.run(
        [
            sys.executable,
            "launch/train.py",
            "--resume",
            "--out",
            str(copy),
            "--max-iters",
            "4",
            *tiny_overrides,
            "tracking.enabled=true",
            "tracking.log_checkpoint=true",
        ],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    recorded = json.loads((copy / "mlflow_run.json").read_text())
    assert recorded["store"] == "run-folder:mlflow.db" and recorded["folder"] == str(copy.resolve())
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")
    resumed = client.get_run(recorded["run_id"])  # the same run, continued in the copy's store
    assert resumed.info.status == "FINISHED" and resumed.info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
    assert [m.step for m in client.get_metric_history(recorded["run_id"], "val_dice")][-1] == 4
    original_store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{original / 'mlflow.db'}")
    assert [m.step for m in original_store.get_metric_history(recorded["run_id"], "val_dice")][-1] == 2  # untouched
    assert before and {path: path.stat().st_mtime_ns for path in (original / "mlartifacts").rglob("*") if path.is_file()} == before
    assert list((copy / "mlartifacts").rglob("best.pt"))  # the resumed run's artifacts went to the copy
