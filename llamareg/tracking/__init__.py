"""Experiment tracking: MLflow runs for training runs and their cascade phases."""

from llamareg.tracking.curves import plot_training_curves
from llamareg.tracking.mlflow_run import TrainingRun, open_training_run, tracking_uri

__all__ = ["TrainingRun", "open_training_run", "plot_training_curves", "tracking_uri"]
