"""Paired comparison of two methods scored on the same pairs: mean difference, bootstrap interval, Wilcoxon.

:func:`paired_difference` compares one run of each method; :func:`seed_pooled_difference` compares
methods trained with several seeds (mean +- sd across seeds, pair-level differences pooled over seeds,
an interval that resamples seeds and pairs). A gap is read as a difference only when the interval
excludes 0; otherwise the two methods are reported as not different on these pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

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


@dataclass(frozen=True)
class SeedSpread:
    """One method's score across training seeds.

    Attributes:
        mean: mean over seeds of each seed's mean over pairs.
        sd: standard deviation of those per-seed means (``ddof=1``; 0 for a single seed).
        seeds: number of seeds (1 for a method without training randomness: identity, ANTs).
    """

    mean: float
    sd: float
    seeds: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} +- {self.sd:.4f} ({self.seeds} seed{'s' if self.seeds != 1 else ''})"


@dataclass(frozen=True)
class SeedPooledDifference(PairedDifference):
    """``a - b`` over pairs and training seeds (see :func:`seed_pooled_difference`).

    Attributes:
        mean: mean pair-level difference, pooled over every seed of ``a`` against every seed of ``b``.
        low, high: its hierarchical bootstrap 95 % interval (seeds of each method resampled, then pairs).
        p_wilcoxon: two-sided Wilcoxon signed-rank p-value of the seed-averaged per-pair differences.
        pairs: number of pairs.
        a, b: each method's mean +- sd across seeds of its per-seed mean.
    """

    a: SeedSpread
    b: SeedSpread


def _per_seed_scores(scores: Any, name: str) -> np.ndarray:
    """``scores`` as a finite ``(seeds, pairs)`` float array: a 2D array, a 1D array (one seed) or a dict
    ``{seed: per-pair scores}`` (taken in sorted seed order). ValueErrors name the argument ``name``."""
    if isinstance(scores, Mapping):
        if not scores:
            raise ValueError(f"{name} holds no seed; give at least one seed's per-pair scores")
        rows = {}
        for seed in scores:
            try:
                row = np.asarray(scores[seed], dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{name}[{seed!r}] must be per-pair scores, as numbers ({error})") from None
            if row.ndim != 1:
                raise ValueError(f"{name}[{seed!r}] must be one list of per-pair scores, got shape {row.shape}")
            rows[seed] = row
        lengths = {len(row) for row in rows.values()}
        if len(lengths) != 1:
            counts = ", ".join(f"seed {seed!r}: {len(row)}" for seed, row in rows.items())
            raise ValueError(f"{name} must score the same pairs with every seed, got different pair counts ({counts})")
        array = np.stack(list(rows.values()))
    else:
        try:
            array = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{name} must be per-pair scores (pairs,), per-seed per-pair scores (seeds, pairs) "
                f"or a dict seed -> per-pair scores, as numbers ({error})"
            ) from None
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2:
            raise ValueError(
                f"{name} must be per-pair scores (pairs,), per-seed per-pair scores (seeds, pairs) "
                f"or a dict seed -> per-pair scores, got shape {array.shape}"
            )
        if array.shape[0] < 1:
            raise ValueError(f"{name} holds no seed; give at least one seed's per-pair scores")
    if not np.isfinite(array).all():
        seed, pair = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name} must hold finite scores, got {array[seed, pair]} for seed row {seed}, pair {pair}")
    return array


def _spread(scores: np.ndarray) -> SeedSpread:
    means = scores.mean(axis=1)
    sd = float(means.std(ddof=1)) if len(means) > 1 else 0.0
    return SeedSpread(float(means.mean()), sd, len(means))


def seed_pooled_difference(a: Any, b: Any, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> SeedPooledDifference:
    """Compare two methods scored on the same pairs, each with one or more training seeds.

    Each method's scores are ``(seeds, pairs)``: an array of that shape, a dict ``{seed: per-pair scores}``
    or, for a method with one run (identity, ANTs SyN), a plain per-pair list, which stands for every seed.
    Pairs are in the same order for every seed and both methods. Seeds are not paired across methods
    (seed 3 of one method has nothing in common with seed 3 of another), so ``a`` and ``b`` may have
    different seed counts.

    - ``a``/``b``: each method's mean +- sd across seeds of its per-seed mean over pairs.
    - ``mean``: the pair-level difference pooled over seeds and pairs: the mean of ``a[i, p] - b[j, p]``
      over every seed ``i`` of ``a``, seed ``j`` of ``b`` and pair ``p``.
    - ``low``/``high``: bootstrap 95 % interval (percentiles) of that mean, resampled hierarchically: in
      each resample the seeds of each method are drawn with replacement, then the pairs (the same
      pairs for both methods), so that both the spread between training runs and the spread between
      pairs widen the interval. With one seed each it is :func:`paired_difference`'s interval.
    - ``p_wilcoxon``: Wilcoxon signed-rank test of the seed-averaged per-pair differences (1.0 when they
      are all 0).
    - ``verdict``: ``no difference`` when the interval holds 0, else ``better``/``worse`` (``a`` than ``b``).

    Args:
        a: scores of the first method (e.g. Dice; higher is better for the verdict's wording).
        b: scores of the second method, on the same pairs.
        seed: seed of the bootstrap resampling.
        resamples: bootstrap resamples.

    Returns:
        A :class:`SeedPooledDifference`.

    Raises:
        ValueError: naming ``a``, ``b`` or ``resamples``: a shape other than (pairs,) or (seeds, pairs),
            seeds with different pair counts, non-finite scores, ``a`` and ``b`` on different numbers of
            pairs, fewer than 2 pairs, or fewer than 1 resample.

    Example:
        >>> a = {0: [0.80, 0.70, 0.90, 0.75], 1: [0.82, 0.72, 0.92, 0.77], 2: [0.78, 0.68, 0.88, 0.73]}
        >>> identity = [0.70, 0.65, 0.80, 0.70]  # no training: one 'seed'
        >>> result = seed_pooled_difference(a, identity)
        >>> print(result.a, "vs", result.b)
        0.7875 +- 0.0200 (3 seeds) vs 0.7125 +- 0.0000 (1 seed)
        >>> round(result.mean, 4), result.verdict
        (0.075, 'better')
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    a, b = _per_seed_scores(a, "a"), _per_seed_scores(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must score the same pairs, got {a.shape[1]} pairs per seed in a and {b.shape[1]} in b")
    pairs = a.shape[1]
    if pairs < 2:
        raise ValueError(f"a paired comparison needs at least 2 pairs, got {pairs} in a and b")
    differences = a.mean(axis=0) - b.mean(axis=0)  # seed-averaged, per pair
    rng = np.random.default_rng(seed)

    def resampled_seed_means(scores: np.ndarray) -> np.ndarray:
        """(resamples, pairs): per-pair means over each resample's seeds, drawn with replacement."""
        count = scores.shape[0]
        weights = rng.multinomial(count, np.full(count, 1 / count), size=resamples) / count
        return weights @ scores

    resampled = resampled_seed_means(a) - resampled_seed_means(b)
    pair_weights = rng.multinomial(pairs, np.full(pairs, 1 / pairs), size=resamples) / pairs
    means = (pair_weights * resampled).sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    p_value = 1.0 if not differences.any() else float(stats.wilcoxon(differences).pvalue)
    return SeedPooledDifference(float(differences.mean()), float(low), float(high), p_value, pairs, _spread(a), _spread(b))
