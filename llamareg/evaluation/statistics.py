"""Paired comparison of two methods scored on the same pairs: mean difference, bootstrap interval, Wilcoxon.

A gap is read as a difference only when the interval excludes 0; otherwise the two methods are reported
as not different on these pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over pairs.

    Attributes:
        mean: mean paired difference.
        low: lower bound of its bootstrap 95 % interval (percentile method, pairs resampled).
        high: upper bound.
        p_wilcoxon: two-sided Wilcoxon signed-rank p-value (1.0 when every difference is 0).
        pairs: number of pairs.
    """

    mean: float
    low: float
    high: float
    p_wilcoxon: float
    pairs: int

    @property
    def verdict(self) -> str:
        """``better`` (interval above 0), ``worse`` (below 0) or ``no difference`` (interval holds 0)."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no difference"

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "verdict": self.verdict}


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> PairedDifference:
    """Compare two methods' per-pair scores ``a`` and ``b`` (same pairs, same order).

    Args:
        a: scores of the first method.
        b: scores of the second method, pair for pair.
        seed: seed of the bootstrap resampling.
        resamples: bootstrap resamples.

    Raises:
        ValueError: the lists differ in length, hold fewer than 2 pairs, or non-finite values.

    Example:
        >>> result = paired_difference([0.8, 0.7, 0.9, 0.75], [0.7, 0.65, 0.8, 0.7])
        >>> round(result.mean, 4), result.verdict
        (0.075, 'better')
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two lists of one length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"a paired comparison needs at least 2 pairs, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired scores must be finite")
    differences = a - b
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    p_value = 1.0 if not differences.any() else float(stats.wilcoxon(differences).pvalue)
    return PairedDifference(float(differences.mean()), float(low), float(high), p_value, len(differences))
