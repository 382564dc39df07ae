"""Read NIfTI images and label maps, with one-line errors that name the file and say what is wrong.

Every reader returns plain numpy arrays in the file's own voxel order together with the file's
affine; reorienting and resampling are :mod:`llamareg.data.preprocess`'s job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import nibabel
import numpy as np

# Image and label grids more than this far apart (in mm, per affine entry) are different grids.
AFFINE_TOLERANCE_MM = 1e-3


def _load(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The raw data (scaling applied) and affine of a NIfTI file, squeezed to 3D."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check the dataset folder or the paths in its list")
    try:
        image = nibabel.load(path)
        data = np.asanyarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as error:  # nibabel, gzip, zlib and numpy each raise their own types for a damaged file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a readable NIfTI file ({reason}); re-export or replace it, or pass --skip-bad") from None
    # Trailing singleton axes (x, y, z, 1) are common in exported label maps; anything else is not a volume.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path} holds a {data.ndim}D array of shape {data.shape}; a 3D volume is needed")
    return data, affine


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """An intensity image as float32 and its voxel-to-world affine.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming ``path``: unreadable or corrupt, not 3D, or holding NaN/infinite values.
    """
    data, affine = _load(path)
    image = np.asarray(data, dtype=np.float32)
    if not np.isfinite(image).all():
        bad = int(np.size(image) - np.isfinite(image).sum())
        raise ValueError(f"{path} holds {bad} NaN or infinite voxels; fix the image or pass --skip-bad")
    return image, affine


def read_label_map(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """An integer label map as int64 and its affine.

    Float files are accepted when every value is a whole number (many tools store masks as float);
    fractional values mean the file is not a label map.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming ``path``: unreadable, not 3D, or holding non-integer or negative values.
    """
    data, affine = _load(path)
    if not np.issubdtype(data.dtype, np.integer):
        values = np.asarray(data, dtype=np.float64)
        if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)):
            raise ValueError(f"{path} holds non-integer values ({data.dtype}); a label map needs whole numbers - is it an image?")
    labels = np.asarray(data, dtype=np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path} holds negative label {labels.min()}; label ids must be >= 0 (0 is background)")
    return labels, affine


def _check_same_grid(
    image_path: os.PathLike, shape: tuple, affine: np.ndarray, label_path: os.PathLike, label_shape: tuple, label_affine: np.ndarray
) -> None:
    if label_shape != shape:
        raise ValueError(f"{label_path} has shape {label_shape} but its image {image_path} has {shape}; they must share one grid")
    if not np.allclose(label_affine, affine, atol=AFFINE_TOLERANCE_MM):
        raise ValueError(f"{label_path} and its image {image_path} have different affines; they must share one grid")


def read_subject(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike | None = None,
    label_masks: Mapping[int, str | os.PathLike] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image with its labels: one label map, binary masks merged into one map, or none (all zeros).

    Args:
        image_path: the intensity image.
        label_path: an integer label map on the image's grid.
        label_masks: ``{label id: mask file}``; each mask's non-zero voxels get its id, later
            entries overwriting earlier ones where masks overlap.

    Returns:
        ``(image float32, labels int64, affine float64)``, image and labels of one shape.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: naming the file: unreadable, not 3D, NaN, non-integer labels, or a label grid
            (shape or affine) that differs from the image's.
    """
    if label_path is not None and label_masks:
        raise ValueError("give a label map or label masks, not both")
    image, affine = read_image(image_path)
    labels = np.zeros(image.shape, dtype=np.int64)
    if label_path is not None:
        labels, label_affine = read_label_map(label_path)
        _check_same_grid(image_path, image.shape, affine, label_path, labels.shape, label_affine)
    for label_id, mask_path in (label_masks or {}).items():
        mask, mask_affine = read_label_map(mask_path)
        _check_same_grid(image_path, image.shape, affine, mask_path, mask.shape, mask_affine)
        labels[mask > 0] = label_id
    return image, labels, affine


def write_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray) -> Path:
    """Save ``data`` (3D) with ``affine`` as NIfTI-1 (``.nii`` or ``.nii.gz`` by the file name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data)
    if data.dtype == np.int64:
        # nibabel refuses int64 without an explicit header dtype, and label ids fit int32.
        data = data.astype(np.int32)
    nibabel.save(nibabel.Nifti1Image(data, np.asarray(affine, dtype=np.float64)), path)
    return path
