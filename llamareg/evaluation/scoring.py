"""Scoring registrations of labelled NIfTI pairs on the fixed image's grid, one path for every method.

``llamareg evaluate`` reports the paper's full metric set; these are the per-pair records the
benchmarks compare methods with (``benchmarks/generalization.py``, ``benchmarks/compare.py``): mean
foreground Dice, % of voxels with det J <= 0 and seconds, for the identity, a trained model
registering as ``llamareg register`` does, and ANTs SyN (antspyx, imported only when used).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llamareg.evaluation.pair_metrics import label_dice, voxel_displacement
from llamareg.inference.model_io import TrainedModel
from llamareg.data.pair_list import PAIR_KEYS, PairPaths, read_pair_list
from llamareg.inference.pair_files import LoadedPair, check_pair, load_pair
from llamareg.inference.registration import grid_of, register_pair, warp_to_fixed
from llamareg.metrics import folding_percentage


def mean_dice(warped_labels: np.ndarray, fixed_labels: np.ndarray, moving_labels: np.ndarray) -> float:
    """Mean Dice over the labels present in the fixed or moving map, on the fixed grid (as ``evaluate``)."""
    return float(np.nanmean(label_dice(warped_labels, fixed_labels, moving_labels)[1]))


def load_pairs(pairs_path: Path) -> list[tuple[PairPaths, LoadedPair]]:
    """Read and check every pair of a pair list (all four files each)."""
    pairs = read_pair_list(pairs_path, required=PAIR_KEYS)
    return [(pair, load_pair(pair, check_pair(pair))) for pair in pairs]


def score_identity(pairs: list[tuple[PairPaths, LoadedPair]]) -> list[dict]:
    """The pairs' records without registration (moving labels resampled onto the fixed grid)."""
    records = []
    for _, loaded in pairs:
        unmoved = warp_to_fixed(loaded.moving_labels, grid_of(loaded.fixed), None, labels=True)
        records.append(
            {"dice": mean_dice(unmoved, loaded.fixed_labels.data, loaded.moving_labels.data), "seconds": 0.0, "folding_pct": 0.0}
        )
    return records


def score_model(trained: TrainedModel, pairs: list[tuple[PairPaths, LoadedPair]], refine: int = 0) -> list[dict]:
    """Register every pair as ``llamareg register`` does and score it."""
    records = []
    for _, loaded in pairs:
        registration = register_pair(trained, loaded.fixed, loaded.moving, loaded.moving_labels, refine_steps=refine)
        flow = voxel_displacement(registration.displacement, loaded.fixed.affine)
        records.append(
            {
                "dice": mean_dice(registration.warped_labels, loaded.fixed_labels.data, loaded.moving_labels.data),
                "seconds": registration.seconds,
                "network_seconds": registration.network_seconds,
                "folding_pct": float(folding_percentage(flow)[0]),
            }
        )
    return records


def score_ants(pairs: list[tuple[PairPaths, LoadedPair]], iterations: Sequence[int] | None) -> list[dict]:
    """ANTs SyN (antspyx ``SyNOnly``) on the same files; labels warped with its transforms."""
    import ants

    records = []
    for pair, loaded in pairs:
        fixed, moving = ants.image_read(str(pair.fixed)), ants.image_read(str(pair.moving))
        moving_labels = ants.image_read(str(pair.moving_labels))
        started = time.perf_counter()
        settings = {} if iterations is None else {"reg_iterations": tuple(iterations)}
        result = ants.registration(fixed, moving, type_of_transform="SyNOnly", **settings)
        warped = ants.apply_transforms(fixed, moving_labels, result["fwdtransforms"], interpolator="nearestNeighbor")
        seconds = time.perf_counter() - started
        records.append(
            {
                "dice": mean_dice(warped.numpy(), loaded.fixed_labels.data, loaded.moving_labels.data),
                "seconds": seconds,
                "folding_pct": None,
            }
        )
    return records
