"""The paper's metrics for one registered pair, computed on the fixed image's voxel grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llamareg.inference.images import NiftiVolume
from llamareg.inference.registration import Registration, grid_of, warp_to_fixed
from llamareg.metrics import (
    dice_per_label,
    folding_percentage,
    foreground_labels,
    hausdorff95,
    nanmean,
    non_diffeomorphic_volume,
    sdlogj_l2r,
)


@dataclass(frozen=True)
class PairMetrics:
    """Metrics of one pair; per-label lists follow ``labels``.

    Attributes:
        labels: foreground label ids present in the fixed or the moving labels.
        dice: Dice of the warped moving labels with the fixed labels, per label.
        dice_identity: the same before registration (moving labels resampled unmoved).
        hd95: 95th percentile Hausdorff distance in mm after registration, per label (NaN where a
            label is missing from one of the maps).
        hd95_identity: the same before registration.
        folding_pct: % of fixed-grid voxels with Jacobian determinant <= 0.
        sdlogj_l2r: Learn2Reg's SDlogJ, the standard deviation of log(det J + 3) (see
            :func:`llamareg.metrics.sdlogj_l2r`).
        ndv_pct: LUMIR's non-diffeomorphic volume, % of the fixed grid.
        seconds: registration wall time.
    """

    labels: list[int]
    dice: list[float]
    dice_identity: list[float]
    hd95: list[float]
    hd95_identity: list[float]
    folding_pct: float
    sdlogj_l2r: float
    ndv_pct: float
    seconds: float

    @property
    def mean_dice(self) -> float:
        return float(np.nanmean(self.dice))

    @property
    def mean_dice_identity(self) -> float:
        return float(np.nanmean(self.dice_identity))

    @property
    def mean_hd95(self) -> float:
        return nanmean(self.hd95)

    @property
    def mean_hd95_identity(self) -> float:
        return nanmean(self.hd95_identity)


def voxel_displacement(displacement: np.ndarray, affine: np.ndarray) -> torch.Tensor:
    """A world-mm displacement ``(X, Y, Z, 3)`` in the voxel units of the grid ``affine`` describes, ``(1, 3, X, Y, Z)``.

    The Jacobian determinant of the map is the same in world and voxel coordinates, so the folding
    and SDlogJ metrics can be taken on this field.
    """
    voxels = displacement.astype(np.float64) @ np.linalg.inv(affine[:3, :3]).T
    return torch.from_numpy(np.moveaxis(voxels, -1, 0)[None].copy())


def label_dice(warped_labels: np.ndarray, fixed_labels: np.ndarray, moving_labels: np.ndarray) -> tuple[list[int], list[float]]:
    """The foreground labels present in the fixed or the moving map, and the Dice of ``warped_labels``
    (the moving labels on the fixed grid) with the fixed labels for each: every method's Dice."""
    target = torch.from_numpy(np.asarray(fixed_labels, dtype=np.int64))[None]
    labels = foreground_labels(target, torch.from_numpy(np.asarray(moving_labels, dtype=np.int64)))
    warped = torch.from_numpy(np.asarray(warped_labels, dtype=np.int64))[None]
    return labels, dice_per_label(warped, target, labels)[0].tolist()


def pair_metrics(registration: Registration, fixed_labels: NiftiVolume, moving_labels: NiftiVolume) -> PairMetrics:
    """Score a registration whose ``warped_labels`` were computed from ``moving_labels``."""
    if registration.warped_labels is None:
        raise ValueError("pair_metrics needs a registration made with moving labels")
    fixed_grid = grid_of(fixed_labels)
    unmoved = warp_to_fixed(moving_labels, fixed_grid, None, labels=True)
    labels, dice = label_dice(registration.warped_labels, fixed_labels.data, moving_labels.data)
    if not labels:
        raise ValueError(f"fixed labels {fixed_labels.path} and moving labels {moving_labels.path} hold no foreground label")
    target = torch.from_numpy(fixed_labels.data)[None]
    after, before = torch.from_numpy(registration.warped_labels)[None], torch.from_numpy(unmoved)[None]
    spacing = fixed_labels.spacing
    flow = voxel_displacement(registration.displacement, fixed_labels.affine)
    return PairMetrics(
        labels=labels,
        dice=dice,
        dice_identity=label_dice(unmoved, fixed_labels.data, moving_labels.data)[1],
        hd95=hausdorff95(after, target, labels, spacing)[0].tolist(),
        hd95_identity=hausdorff95(before, target, labels, spacing)[0].tolist(),
        folding_pct=float(folding_percentage(flow)[0]),
        sdlogj_l2r=float(sdlogj_l2r(flow)[0]),
        ndv_pct=float(non_diffeomorphic_volume(flow)[0]),
        seconds=registration.seconds,
    )
