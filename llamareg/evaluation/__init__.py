"""Evaluating a checkpoint on labelled pairs: per-pair metrics, tables, figures and MLflow logging."""

from llamareg.evaluation.pair_metrics import PairMetrics, pair_metrics
from llamareg.evaluation.report import PairRecord, markdown_summary, per_label_csv, per_pair_csv, summarise

__all__ = ["PairMetrics", "PairRecord", "markdown_summary", "pair_metrics", "per_label_csv", "per_pair_csv", "summarise"]
