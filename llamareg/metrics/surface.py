"""Surface distance metrics on integer label maps (numpy / scipy on the CPU)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from llamareg.metrics.overlap import validate_label_maps

HAUSDORFF_PERCENTILE = 95.0


def _surface(region: np.ndarray) -> np.ndarray:
    """Voxels of ``region`` with a 6-connected neighbour outside it (the volume border counts as outside)."""
    return region & ~ndimage.binary_erosion(region, border_value=0)


def _hausdorff95_one(pred: np.ndarray, target: np.ndarray, spacing: tuple[float, float, float]) -> float:
    union = pred | target
    # The distances only involve the two surfaces, so the distance transforms can run on their bounding
    # box (plus one voxel so that erosion treats the crop edge like the rest of the outside).
    corners = np.argwhere(union)
    low = np.maximum(corners.min(axis=0) - 1, 0)
    high = np.minimum(corners.max(axis=0) + 2, union.shape)
    crop = tuple(slice(a, b) for a, b in zip(low, high))
    pred_surface = _surface(pred[crop])
    target_surface = _surface(target[crop])
    to_target = ndimage.distance_transform_edt(~target_surface, sampling=spacing)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[target_surface]
    return float(max(np.percentile(to_target, HAUSDORFF_PERCENTILE), np.percentile(to_pred, HAUSDORFF_PERCENTILE)))


def hausdorff95(
    pred: torch.Tensor,
    target: torch.Tensor,
    labels: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """95th percentile symmetric Hausdorff distance between label surfaces.

    Surfaces are the label voxels with a 6-connected neighbour outside the label. For each surface the
    distances of its voxels to the other surface are taken, and the larger of the two directed 95th
    percentiles is reported (the convention of medpy, MONAI and Learn2Reg).

    Args:
        pred: ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` integer labels.
        target: integer labels of the same shape.
        labels: label values to score.
        spacing: voxel size along ``(D, H, W)``, in the unit the result should have.

    Returns:
        ``(B, L)`` float64 tensor; NaN where a label is missing from either volume.

    Example:
        >>> pred = torch.zeros(1, 6, 6, 6, dtype=torch.long); pred[0, 1:4, 1:4, 1:4] = 1
        >>> hausdorff95(pred, pred.roll(1, dims=3), [1], spacing=(1, 1, 2)).tolist()
        [[2.0]]
    """
    pred, target = validate_label_maps(pred, target)
    labels = [int(label) for label in labels]
    if not labels:
        raise ValueError("labels must name at least one label value")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers (D, H, W), got {spacing}")
    pred_array = pred.detach().cpu().numpy()
    target_array = target.detach().cpu().numpy()
    distances = np.full((len(pred_array), len(labels)), np.nan)
    for item, (pred_labels, target_labels) in enumerate(zip(pred_array, target_array)):
        for column, label in enumerate(labels):
            in_pred = pred_labels == label
            in_target = target_labels == label
            if in_pred.any() and in_target.any():
                distances[item, column] = _hausdorff95_one(in_pred, in_target, spacing)
    return torch.from_numpy(distances)
