"""Displacement fields in the submission formats of Learn2Reg and LUMIR.

Both challenges take, per test pair, a displacement on the fixed image's voxel grid in voxel units, in
the convention of ``scipy.ndimage.map_coordinates``: the fixed voxel ``i`` corresponds to the moving
voxel ``i + u(i)``, so ``warped = map_coordinates(moving, identity + u)``.

* ``l2r`` (Learn2Reg 2021, OASIS): ``disp_XXXX_YYYY.npz`` (fixed XXXX, moving YYYY) holding one
  ``(3, X/2, Y/2, Z/2)`` float16 array, the field at half resolution (``zoom(u, 0.5, order=2)``; the
  evaluation zooms it back by 2 with ``order=2``).
* ``lumir`` (LUMIR 2024): ``disp_FFFF_MMMM.nii.gz``, the full-resolution ``(X, Y, Z, 3)`` field in
  float32 with the fixed image's affine.

The case numbers are read from file names ending in ``_NNNN_0000.nii.gz`` (Learn2Reg's naming, read
as its evaluation reads them: ``name[-16:-12]``), else the pair's index in the list.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nibabel
import numpy as np
from scipy import ndimage

from llamareg.checks import look_up_option
from llamareg.atomic import atomic_output

FORMATS = ("l2r", "lumir")
_CASE_NAME = re.compile(r"_(\d{4})_\d{4}\.nii(\.gz)?$")


def case_number(path: str | Path, index: int) -> str:
    """The 4-digit case number of a Learn2Reg-named image, else ``index`` as 4 digits.

    Example:
        >>> case_number("imagesTs/OASIS_0438_0000.nii.gz", 0), case_number("scan.nii.gz", 7)
        ('0438', '0007')
    """
    match = _CASE_NAME.search(Path(path).name)
    return match.group(1) if match else f"{index:04d}"


def voxel_map(displacement_mm: np.ndarray, fixed_affine: np.ndarray, moving_affine: np.ndarray) -> np.ndarray:
    """``(3, X, Y, Z)`` float64 ``u`` with fixed voxel ``i`` -> moving voxel ``i + u(i)``, from a world-mm
    displacement ``(X, Y, Z, 3)`` on the fixed grid (fixed point ``p`` -> moving point ``p + d(p)``)."""
    shape = displacement_mm.shape[:3]
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), axis=-1)
    world = index @ fixed_affine[:3, :3].T + fixed_affine[:3, 3] + displacement_mm
    moving_index = (world - moving_affine[:3, 3]) @ np.linalg.inv(moving_affine[:3, :3]).T
    return np.moveaxis(moving_index - index, -1, 0)


def export_name(kind: str, fixed: str | Path, moving: str | Path, index: int) -> str:
    """The file name the challenge expects for a pair."""
    suffix = {"l2r": ".npz", "lumir": ".nii.gz"}[kind]
    return f"disp_{case_number(fixed, index)}_{case_number(moving, index)}{suffix}"


def write_displacement(kind: str, path: Path, field: np.ndarray, fixed_affine: np.ndarray) -> Path:
    """Write ``field`` (``(3, X, Y, Z)`` voxel units, see :func:`voxel_map`) in the ``kind`` format, atomically.

    Raises:
        ValueError: an unknown ``kind``.
    """
    look_up_option(kind, FORMATS, "--export")
    with atomic_output(path) as temporary:
        if kind == "l2r":
            half = np.stack([ndimage.zoom(component, 0.5, order=2) for component in field]).astype(np.float16)
            with open(temporary, "wb") as stream:
                np.savez_compressed(stream, half)
        else:
            image = nibabel.Nifti1Image(np.moveaxis(field, 0, -1).astype(np.float32), fixed_affine)
            temporary.write_bytes(gzip.compress(image.to_bytes()))
    return path
