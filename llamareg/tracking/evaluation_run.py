"""Logging an evaluation to an existing MLflow run (metrics and the output files as artifacts).

mlflow is imported only when a run is given: it is slow to import and not needed otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ARTIFACT_FOLDER = "evaluation"
SQLITE_PREFIX = "sqlite:///"


def _client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep MLflow's INFO lines (store set-up) off stderr, where a command's error line goes."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_run(run_id: str, tracking_uri: str | None) -> None:
    """Check that the run exists and is not deleted, before any work is done.

    Raises:
        ValueError: one line naming the run and the tracking URI (also when a ``sqlite:///`` store
            does not exist: it is not created).
    """
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:  # MLflow's default would create a store in the working folder rather than find the run's
        raise ValueError(
            f"--mlflow-run-id {run_id} needs the store that holds it: give --tracking-uri "
            "(e.g. sqlite:///runs/cpu-default/mlflow.db) or set MLFLOW_TRACKING_URI"
        )
    where = uri
    if uri.startswith(SQLITE_PREFIX) and not Path(uri[len(SQLITE_PREFIX) :]).is_file():
        raise ValueError(f"MLflow tracking store {uri} does not exist; check --tracking-uri or MLFLOW_TRACKING_URI")
    try:
        with _quiet():
            run = _client(uri).get_run(run_id)
    except MlflowException as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"--mlflow-run-id {run_id} cannot be found at {where} ({reason}); check --tracking-uri or MLFLOW_TRACKING_URI"
        ) from None
    if run.info.lifecycle_stage == "deleted":
        raise ValueError(f"--mlflow-run-id {run_id} at {where} is deleted; restore it or give another run")


def summary_metrics(summary: dict) -> dict[str, float]:
    """Flat ``eval_*`` metric names for a summary from :func:`llamareg.evaluation.report.summarise`."""
    flat = {}
    for key in ("dice", "dice_identity", "hd95_mm", "hd95_identity_mm", "folding_pct", "sdlogj_l2r", "ndv_pct", "seconds"):
        flat[f"eval_{key}_mean"] = summary[key]["mean"]
        flat[f"eval_{key}_std"] = summary[key]["std"]
    for label, stats in summary["dice_per_label"].items():
        flat[f"eval_dice_label_{label}"] = stats["mean"]
    flat["eval_pairs"] = float(summary["pairs"])
    return {key: value for key, value in flat.items() if not math.isnan(value)}  # e.g. no HD95 when a label is always missing


def log_evaluation(run_id: str, tracking_uri: str | None, summary: dict, files: Sequence[str | Path]) -> None:
    """Log the summary's metrics and the given files (under ``evaluation/``) to the run."""
    from mlflow.entities import Metric

    with _quiet():
        client = _client(tracking_uri)
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, 0) for key, value in summary_metrics(summary).items()]
    client.log_batch(run_id, metrics=metrics)
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_FOLDER)
