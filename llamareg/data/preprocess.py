"""Bring NIfTI volumes onto one grid: reorient, resample, normalise intensity, crop or pad, remap labels.

The steps run in that order on numpy arrays and keep the voxel-to-world affine exact at each step,
so a preprocessed volume still sits where its source did in world (scanner) coordinates. Padding
comes after intensity normalisation so that the padded voxels are 0, the normalised minimum.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.affines import voxel_sizes
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform
from scipy import ndimage

from llamareg.checks import check_shape

SHAPE_MULTIPLE = 16  # the network halves the volume four times


@dataclass(frozen=True)
class Preprocessing:
    """What the shard builder does to every subject; each step has a default that suits brain and knee MRI.

    Args:
        orientation: Axis codes to reorient to (``"RAS"``: axes point right, anterior, superior), or
            ``None`` to keep the file's voxel order.
        spacing_mm: Voxel size to resample to, one value per axis, or ``None`` to keep each file's own.
        shape: Output shape, each side divisible by 16, reached by centred cropping or zero padding;
            ``None`` asks the builder for the smallest such shape that holds every subject.
        clip_percentiles: Intensity percentiles mapped to 0 and 1, values outside clipped
            (``(0, 100)`` is plain min-max scaling).
        label_map: ``{source id: stored id}``; ids absent from the table become 0 (background).
            ``None`` keeps the ids as they are.

    Example:
        >>> Preprocessing(spacing_mm=(1.0, 1.0, 1.0), shape=(160, 192, 224)).to_dict()["shape"]
        [160, 192, 224]
    """

    orientation: str | None = "RAS"
    spacing_mm: tuple[float, float, float] | None = None
    shape: tuple[int, int, int] | None = None
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    label_map: Mapping[int, int] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.orientation is not None:
            codes = self.orientation.upper()
            axes = {"L": "x", "R": "x", "P": "y", "A": "y", "I": "z", "S": "z"}
            if len(codes) != 3 or any(code not in axes for code in codes) or len({axes[code] for code in codes}) != 3:
                raise ValueError(f"--orientation must be three axis codes, one of L/R, A/P, S/I each (e.g. RAS), got '{self.orientation}'")
            object.__setattr__(self, "orientation", codes)
        if self.spacing_mm is not None:
            if len(self.spacing_mm) != 3 or any(not value > 0 for value in self.spacing_mm):
                raise ValueError(f"--spacing must be one or three positive sizes in mm, got {list(self.spacing_mm)}")
            object.__setattr__(self, "spacing_mm", tuple(float(value) for value in self.spacing_mm))
        if self.shape is not None:
            object.__setattr__(self, "shape", check_shape(self.shape, "--shape", multiple=SHAPE_MULTIPLE))
        low, high = self.clip_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"--clip-percentiles must satisfy 0 <= LOW < HIGH <= 100, got {low} {high}")
        if self.label_map is not None:
            if any(int(old) < 0 or int(new) < 0 for old, new in self.label_map.items()):
                raise ValueError(f"--label-map ids must be >= 0, got {dict(self.label_map)}")
            object.__setattr__(self, "label_map", {int(old): int(new) for old, new in self.label_map.items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded in the shard manifest."""
        return {
            "orientation": self.orientation,
            "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "shape": list(self.shape) if self.shape else None,
            "clip_percentiles": list(self.clip_percentiles),
            "label_map": {str(old): new for old, new in self.label_map.items()} if self.label_map is not None else None,
        }


def read_label_table(path: str | os.PathLike) -> dict[int, int]:
    """A label remapping table from a JSON object ``{"source id": stored id, ...}``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file: not JSON, or not a mapping of integer ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--label-map {path} does not exist")
    try:
        table = json.loads(path.read_text())
        return {int(old): int(new) for old, new in table.items()}
    except (ValueError, AttributeError, TypeError) as error:
        raise ValueError(f'--label-map {path} must be a JSON object of integer ids like {{"4": 1, "43": 1}} ({error})') from None


def reorient(data: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip the voxel axes so that they point along ``codes`` (e.g. ``"RAS"``).

    Only the voxel order changes: every voxel keeps its world position, through the updated affine.

    Example:
        >>> flipped = np.diag([-1.0, 1.0, 1.0, 1.0])  # x runs right to left (L)
        >>> data, affine = reorient(np.arange(3.0)[:, None, None], flipped, "RAS")
        >>> data.ravel().tolist(), affine[0].tolist()
        ([2.0, 1.0, 0.0], [1.0, 0.0, 0.0, -2.0])
    """
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(codes)))
    return np.ascontiguousarray(apply_orientation(data, transform)), affine @ inv_ornt_aff(transform, data.shape)


def resample(data: np.ndarray, affine: np.ndarray, spacing_mm: Sequence[float], labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Resample to ``spacing_mm`` over the same field of view: linear for images, nearest for labels.

    Images are low-pass filtered first when downsampling so that they do not alias. The outer voxel
    edges stay where they were (up to rounding of the new shape).
    """
    scale = np.asarray(spacing_mm, dtype=np.float64) / voxel_sizes(affine)
    if np.allclose(scale, 1.0, atol=1e-6):
        return data, affine
    shape = tuple(max(1, int(round(size / factor))) for size, factor in zip(data.shape, scale))
    # Old voxel coordinate of new voxel i: scale * i + (scale - 1) / 2, which aligns the voxel edges.
    offset = (scale - 1.0) / 2.0
    if labels:
        resampled = ndimage.affine_transform(data, scale, offset, output_shape=shape, order=0, mode="nearest")
    else:
        # Same rule as skimage's anti-aliasing (and llamareg.data.mni152): sigma = (factor - 1) / 2 voxels.
        smoothed = ndimage.gaussian_filter(data, np.maximum((scale - 1.0) / 2.0, 0.0))
        resampled = ndimage.affine_transform(smoothed, scale, offset, output_shape=shape, order=1, mode="nearest")
    step = np.eye(4)
    step[:3, :3] = np.diag(scale)
    step[:3, 3] = offset
    return resampled, affine @ step


def crop_or_pad(data: np.ndarray, affine: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre ``data`` in ``shape``: crop where it is larger, zero-pad where it is smaller.

    Example:
        >>> data, affine = crop_or_pad(np.ones((2, 6, 4)), np.eye(4), (4, 4, 4))
        >>> data.shape, affine[:3, 3].tolist()
        ((4, 4, 4), [-1.0, 1.0, 0.0])
    """
    starts = [(size - target) // 2 for size, target in zip(data.shape, shape)]  # negative: padding
    cropped = data[tuple(slice(max(start, 0), max(start, 0) + target) for start, target in zip(starts, shape))]
    padding = [(max(-start, 0), target - size - max(-start, 0)) for start, target, size in zip(starts, shape, cropped.shape)]
    padded = np.pad(cropped, padding) if any(before or after for before, after in padding) else cropped
    shift = np.eye(4)
    shift[:3, 3] = starts
    return np.ascontiguousarray(padded), affine @ shift


def normalize_intensity(image: np.ndarray, clip_percentiles: Sequence[float]) -> np.ndarray:
    """Map the ``clip_percentiles`` of ``image`` to 0 and 1 (float32), clipping values outside.

    Raises:
        ValueError: the image is constant between the two percentiles.

    Example:
        >>> normalize_intensity(np.array([0.0, 5.0, 10.0]), (0, 100)).tolist()
        [0.0, 0.5, 1.0]
    """
    low, high = np.percentile(image, clip_percentiles)
    if not high > low:
        raise ValueError(f"the image is constant ({low:.4g}) between percentiles {list(clip_percentiles)}; nothing to normalise")
    return np.clip((image.astype(np.float64) - low) / (high - low), 0.0, 1.0).astype(np.float32)


def remap_labels(labels: np.ndarray, table: Mapping[int, int]) -> np.ndarray:
    """Replace each id by ``table[id]``; ids missing from the table become 0.

    Example:
        >>> remap_labels(np.array([0, 4, 43, 7]), {4: 1, 43: 1}).tolist()
        [0, 1, 1, 0]
    """
    lookup = np.zeros(max(int(labels.max(initial=0)), max(table, default=0)) + 1, dtype=np.int64)
    for old, new in table.items():
        lookup[old] = new
    return lookup[labels]


def planned_shape(shape: Sequence[int], affine: np.ndarray, options: Preprocessing) -> tuple[int, int, int]:
    """Shape of a volume after reorientation and resampling, before cropping or padding (header only)."""
    placeholder = np.broadcast_to(np.float32(0), tuple(shape))  # no memory: only the shape and strides matter
    if options.orientation:
        placeholder, affine = reorient(placeholder, affine, options.orientation)
    if options.spacing_mm:
        scale = np.asarray(options.spacing_mm) / voxel_sizes(affine)
        if not np.allclose(scale, 1.0, atol=1e-6):
            return tuple(max(1, int(round(size / factor))) for size, factor in zip(placeholder.shape, scale))
    return tuple(int(size) for size in placeholder.shape)


def fitting_shape(shapes: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """The smallest shape divisible by 16 that holds each of ``shapes``.

    Example:
        >>> fitting_shape([(150, 180, 150), (160, 170, 140)])
        (160, 192, 160)
    """
    return tuple(SHAPE_MULTIPLE * math.ceil(max(sizes) / SHAPE_MULTIPLE) for sizes in zip(*shapes))


def preprocess_subject(
    image: np.ndarray, labels: np.ndarray, affine: np.ndarray, options: Preprocessing
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every step of ``options`` on one subject read by :func:`llamareg.data.nifti.read_subject`.

    Returns:
        ``(image float32 in [0, 1], labels int64, affine float64)`` on the grid of ``options.shape``.

    Raises:
        ValueError: ``options.shape`` is not set, or the image is constant.
    """
    if options.shape is None:
        raise ValueError("preprocess_subject needs options.shape; the builder picks one with fitting_shape")
    if options.orientation:
        image, _ = reorient(image, affine, options.orientation)
        labels, affine = reorient(labels, affine, options.orientation)
    if options.spacing_mm:
        image, _ = resample(image, affine, options.spacing_mm)
        labels, affine = resample(labels, affine, options.spacing_mm, labels=True)
    image = normalize_intensity(image, options.clip_percentiles)
    if options.label_map is not None:
        labels = remap_labels(labels, options.label_map)
    image, _ = crop_or_pad(image, affine, options.shape)
    labels, affine = crop_or_pad(labels, affine, options.shape)
    return image, labels.astype(np.int64, copy=False), affine
