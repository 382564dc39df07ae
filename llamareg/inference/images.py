"""Reading the volumes to register: any 3D image nibabel reads (NIfTI, MGH), one clear error line per bad file.

Headers are checked first (:func:`open_volume`, :func:`check_same_grid`) so that every input of a
command can be validated before anything is computed or written; the voxels are read afterwards
(:func:`read_intensities`, :func:`read_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel
import numpy as np

from llamareg.data.preprocess import Preprocessing, normalize_intensity

# Intensities are mapped to [0, 1] like the NIfTI training data (llamareg.data.preprocess defaults).
CLIP_PERCENTILES = Preprocessing().clip_percentiles  # (0.5, 99.5)
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class NiftiVolume:
    """A 3D array with its voxel-to-world (RAS mm) affine and the header it came with.

    Attributes:
        data: ``(X, Y, Z)`` voxels (float32 intensities or int64 labels).
        affine: ``(4, 4)`` voxel-index-to-world matrix, as nibabel reports it.
        header: the file's header (its qform/sform codes are copied to outputs on its grid).
        path: where it was read from, for messages.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nibabel.spatialimages.SpatialHeader
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


def _spatial_shape(image: nibabel.spatialimages.SpatialImage) -> tuple[int, ...]:
    """The shape without trailing singleton axes beyond the third ((X, Y, Z, 1) is a 3D volume)."""
    shape = tuple(image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def open_volume(path: str | Path, role: str) -> nibabel.spatialimages.SpatialImage:
    """Open ``path``'s header and check it holds one 3D volume.

    Args:
        path: the image file.
        role: what the file is for, e.g. ``"fixed image"``; names it in errors.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image nibabel reads, or not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{role} {path} does not exist")
    try:
        image = nibabel.load(path)
    except Exception as error:  # nibabel raises several types for foreign or truncated files
        raise ValueError(f"{role} {path} is not a readable NIfTI image ({type(error).__name__}); give a .nii or .nii.gz file") from None
    shape = _spatial_shape(image)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"{role} {path} must be a 3D volume (at least 2 voxels per axis), got shape {tuple(image.shape)}")
    return image


def check_same_grid(
    labels: nibabel.spatialimages.SpatialImage,
    labels_path: str | Path,
    image: nibabel.spatialimages.SpatialImage,
    image_path: str | Path,
    role: str,
) -> None:
    """Check that a label map lies on its image's voxel grid (same shape and affine).

    Raises:
        ValueError: naming both files when the shapes or affines differ.
    """
    if _spatial_shape(labels) != _spatial_shape(image):
        raise ValueError(
            f"{role} {labels_path} has shape {_spatial_shape(labels)} but its image {image_path} has "
            f"{_spatial_shape(image)}; give labels on the image's voxel grid"
        )
    if not np.allclose(labels.affine, image.affine, atol=AFFINE_TOLERANCE_MM):
        raise ValueError(f"{role} {labels_path} has another affine than its image {image_path}; give labels on the image's voxel grid")


def _voxels(image: nibabel.spatialimages.SpatialImage, path: Path, role: str) -> np.ndarray:
    try:
        data = np.asarray(image.dataobj)
    except Exception as error:  # zlib, EOF and nibabel errors for truncated or damaged files
        raise ValueError(f"{role} {path} cannot be read ({type(error).__name__}); the file is truncated or damaged") from None
    data = data.reshape(_spatial_shape(image))
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"{role} {path} must hold real numbers, got dtype {data.dtype}")
    if not np.isfinite(data).all():
        raise ValueError(f"{role} {path} holds NaN or infinite values; replace them before registering")
    return data


def read_intensities(image: nibabel.spatialimages.SpatialImage, path: str | Path, role: str) -> NiftiVolume:
    """The voxels of an opened image as float32 (in the file's own units)."""
    path = Path(path)
    data = _voxels(image, path, role).astype(np.float32)
    low, high = np.percentile(data, CLIP_PERCENTILES)
    if not high > low:
        raise ValueError(f"{role} {path} is constant ({low:g}) between its {CLIP_PERCENTILES} percentiles; it holds nothing to register")
    return NiftiVolume(data, np.asarray(image.affine, dtype=np.float64), image.header, path)


def read_labels(image: nibabel.spatialimages.SpatialImage, path: str | Path, role: str) -> NiftiVolume:
    """The voxels of an opened label map as int64 (0 is background).

    Raises:
        ValueError: a value is negative or not a whole number.
    """
    path = Path(path)
    data = _voxels(image, path, role)
    if data.min() < 0 or not np.array_equal(data, np.round(data)):
        raise ValueError(f"{role} {path} must hold non-negative whole-number labels (0 = background); is it an intensity image?")
    return NiftiVolume(data.astype(np.int64), np.asarray(image.affine, dtype=np.float64), image.header, path)


def normalise_intensities(data: np.ndarray) -> np.ndarray:
    """Map intensities to [0, 1] as the NIfTI training data are: the 0.5th and 99.5th percentiles go
    to 0 and 1, values outside are clipped (:func:`llamareg.data.preprocess.normalize_intensity`)."""
    return normalize_intensity(data, CLIP_PERCENTILES)
