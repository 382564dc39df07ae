"""Writing registration outputs as NIfTI on the fixed image's grid, each file atomically.

Displacement conventions:

* ``displacement.nii.gz`` (default): shape ``(X, Y, Z, 3)`` float32 on the fixed image's voxel
  grid (its affine), components in world RAS millimetres, such that the fixed image's point ``p``
  corresponds to the moving image's point ``p + u(p)`` (the warped image is the moving image
  sampled there).
* ``displacement_itk.nii.gz`` (``--itk``): the same field in the ITK/ANTs convention, a 5D vector
  image ``(X, Y, Z, 1, 3)`` with intent code 1007 (vector) and components in LPS millimetres (R
  and A negated), directly usable by ``antsApplyTransforms -t`` or as an ITK displacement field
  transform mapping fixed points to moving points.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel
import numpy as np

from llamareg.atomic import atomic_output
from llamareg.inference.images import NiftiVolume

RAS_TO_LPS = np.array([-1.0, -1.0, 1.0], dtype=np.float32)


def nifti_like(data: np.ndarray, reference: NiftiVolume) -> nibabel.Nifti1Image:
    """A NIfTI image of ``data`` with ``reference``'s affine and, for NIfTI references, its qform/sform codes."""
    image = nibabel.Nifti1Image(data, reference.affine)
    if isinstance(reference.header, nibabel.Nifti1Header):
        qform, qform_code = reference.header.get_qform(coded=True)
        sform, sform_code = reference.header.get_sform(coded=True)
        if qform_code:
            image.set_qform(qform, int(qform_code))
        if sform_code:
            image.set_sform(sform, int(sform_code))
    image.header.set_xyzt_units("mm")
    return image


def save_nifti(image: nibabel.Nifti1Image, path: str | Path) -> Path:
    """Write ``image`` to ``path`` (``.nii`` or ``.nii.gz``) through a temporary file."""
    path = Path(path)
    payload = image.to_bytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    with atomic_output(path) as temporary:
        temporary.write_bytes(payload)
    return path


def displacement_image(displacement: np.ndarray, fixed: NiftiVolume, itk: bool = False) -> nibabel.Nifti1Image:
    """The displacement ``(X, Y, Z, 3)`` (RAS mm) as a NIfTI image in the default or the ITK convention."""
    if not itk:
        image = nifti_like(displacement.astype(np.float32), fixed)
        image.header["descrip"] = b"llamareg displacement RAS mm: moving=p+u(p)"
        return image
    lps = (displacement * RAS_TO_LPS).astype(np.float32)[:, :, :, None, :]
    image = nifti_like(lps, fixed)
    image.header.set_intent("vector")
    image.header["descrip"] = b"ITK displacement LPS mm"
    return image
