"""MLflow runs for training: one run per training run, a nested child run per cascade phase.

The client API is used throughout (no ``mlflow.start_run`` global state), so a parent and its
children can be open at once. Each run's id is kept in ``<folder>/mlflow_run.json`` so that
``--resume`` continues the same run instead of starting a new one.

The default store lives in the run folder (``mlflow.db``, artifacts in ``mlartifacts/``), and the id
file names it relative to that folder, so a copied or moved run folder resumes into its own store:
the store's artifact locations, which MLflow keeps as absolute paths, are re-pointed at the folder's
new place first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping

from llamareg.atomic import write_json
from llamareg.config import TrackingConfig

RUN_FILE = "mlflow_run.json"
DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
# MLflow's own limits: 100 params per batch call, 6000 characters per param value.
PARAM_BATCH = 100
PARAM_VALUE_LIMIT = 6000


def tracking_uri(settings: TrackingConfig, out: str | os.PathLike) -> str:
    """The store to log to: ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``<out>/mlflow.db``."""
    if settings.uri:
        return settings.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return _default_uri(Path(out))


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a sqlite store (else MLflow puts them in ./mlruns of the working directory)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / DEFAULT_ARTIFACTS).resolve().as_uri()
    return None  # a server or other store chooses its own


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": "0.0001"}`` (MLflow params are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = (json.dumps(value) if not isinstance(value, str) else value)[:PARAM_VALUE_LIMIT]
    return flat


class TrainingRun:
    """A run that training logs to; the disabled run (``client=None``) ignores every call.

    Other ranks than 0 and ``tracking.enabled=false`` get the disabled run, so the training code
    never has to ask whether to log.

    Args:
        client: An ``mlflow.MlflowClient``, or None for the disabled run.
        run_id: The run's id (None when disabled).
        folder: Where the run's id file lives (the phase's output folder).
    """

    def __init__(self, client: Any = None, run_id: str | None = None, folder: Path | None = None, root: Path | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.folder = folder
        self.root = root if root is not None else folder  # the training run's top folder

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (possibly nested) parameters; already-logged ones with the same value are fine."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, v) for k, v in flatten(params).items() if k not in logged]
        for start in range(0, len(fresh), PARAM_BATCH):
            self.client.log_batch(self.run_id, params=fresh[start : start + PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """Log numeric metrics at ``step`` (an iteration); None values are skipped."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float))]
        if entries:
            self.client.log_batch(self.run_id, metrics=entries)

    def log_artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_dict(self, values: Mapping[str, Any], name: str) -> None:
        """Store ``values`` as the JSON artifact ``name`` (e.g. the DeepSpeed config)."""
        if self.enabled:
            self.client.log_dict(self.run_id, dict(values), name)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled:
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, str(value))

    def child(self, name: str, folder: Path, resume: bool) -> "TrainingRun":
        """A nested run for one cascade phase, kept in ``folder`` (reopened on resume)."""
        if not self.enabled:
            return TrainingRun()
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return _open(self.client, experiment_id, name, folder, self.root, resume, parent=self.run_id)

    def finish(self, failed: bool = False) -> None:
        if self.enabled:
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def _store_name(uri: str, root: Path) -> str:
    """``uri`` with the run folder's own store written as ``run-folder:mlflow.db``, which a copy shares."""
    return f"run-folder:{DEFAULT_DB}" if uri == _default_uri(root) else uri


def _default_uri(root: Path) -> str:
    return f"sqlite:///{Path(root).resolve() / DEFAULT_DB}"


def _open(client: Any, experiment_id: str, name: str, folder: Path, root: Path, resume: bool, parent: str | None = None) -> TrainingRun:
    """Reopen the run recorded in ``folder`` when resuming in the same store, else create one (ending the
    recorded run as KILLED if it was left RUNNING by a killed process)."""
    record = folder / RUN_FILE
    store = _store_name(client.tracking_uri, root)
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("store", saved.get("tracking_uri")) == store:
            if resume:
                client.update_run(saved["run_id"], status="RUNNING")
                return TrainingRun(client, saved["run_id"], folder, root)
            _end_interrupted(client, saved["run_id"])
    tags = {"mlflow.parentRunId": parent} if parent else {}
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    write_json(
        record,
        {
            "store": store,
            "tracking_uri": client.tracking_uri,
            "folder": str(Path(root).resolve()),
            "run_id": run.info.run_id,
            "experiment_id": experiment_id,
        },
    )
    return TrainingRun(client, run.info.run_id, folder, root)


def _relocate_store(root: Path) -> None:
    """Re-point the artifact locations of the run folder's own store at this folder when the folder was
    copied or moved since the store was written (its id file says where that was)."""
    root = Path(root).resolve()
    database, record = root / DEFAULT_DB, root / RUN_FILE
    if not (database.is_file() and record.is_file()):
        return
    saved = json.loads(record.read_text())
    earlier = saved.get("folder")
    if not earlier or Path(earlier) == root:
        return
    old, new = _artifact_location(_default_uri(Path(earlier))), _artifact_location(_default_uri(root))
    connection = sqlite3.connect(database)
    try:
        with connection:
            connection.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (old, new))
            connection.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (old, new))
    finally:
        connection.close()
    write_json(record, {**saved, "folder": str(root), "tracking_uri": _default_uri(root)})


def _end_interrupted(client: Any, run_id: str) -> None:
    """Mark the folder's earlier run KILLED if it never ended (its process was killed), as a new run replaces it."""
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
    except Exception:  # the run was deleted from the store: nothing to end
        pass


def _check_sqlite_file(uri: str) -> None:
    """Fail at once on a sqlite path that cannot be a database file (MLflow would retry for ~100 s)."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///") :])
    if path.is_dir():
        raise ValueError(
            f"MLflow store {uri} cannot be opened: {path} is a folder; point tracking.uri at a file such as {path / DEFAULT_DB}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)


def is_rank_zero() -> bool:
    """Whether this process logs: rank 0 of a distributed job, or a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def open_training_run(settings: TrackingConfig, out: str | os.PathLike, name: str, resume: bool) -> TrainingRun:
    """The top-level run of a training run writing to ``out``: disabled when off or not rank 0.

    Raises:
        ValueError: the tracking store cannot be opened (names the URI and the fix).
    """
    if not settings.enabled or not is_rank_zero():
        return TrainingRun()
    import mlflow

    uri = tracking_uri(settings, out)
    Path(out).mkdir(parents=True, exist_ok=True)
    _check_sqlite_file(uri)
    if uri == _default_uri(out):
        _relocate_store(Path(out))
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(settings.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(settings.experiment, artifact_location=_artifact_location(uri))
        )
    except Exception as error:  # MLflow raises many types for unreachable or malformed stores
        raise ValueError(
            f"MLflow store {uri} cannot be opened ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "fix tracking.uri / MLFLOW_TRACKING_URI or set tracking.enabled=false"
        ) from None
    return _open(client, experiment_id, name, Path(out), Path(out), resume)
