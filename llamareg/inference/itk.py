"""ITK text transforms (``affine.txt``) and ITK displacement images, read and written.

ITK, SimpleITK and ANTs (``antsApplyTransforms -t affine.txt``) work in LPS millimetres; llamareg in
RAS. A transform ``q = A p + b`` in RAS is ``q' = F A F p' + F b`` in LPS, with ``F = diag(-1, -1, 1)``.
An ITK ``AffineTransform_double_3_3`` with parameters ``M`` (row-major), translation ``t`` and fixed
parameters (centre) ``c`` maps ``p' -> M (p' - c) + c + t``; both ITK and ANTs use it to map points of
the fixed (output) image to the moving (input) image, the convention of :class:`AffineTransform`.
"""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np

from llamareg.atomic import atomic_output
from llamareg.inference.affine import AffineTransform
from llamareg.inference.grid import Grid

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
# The names ITK and ANTs give the 3D affine in text files; all share the parameter layout above.
AFFINE_TYPES = (
    "AffineTransform_double_3_3",
    "AffineTransform_float_3_3",
    "MatrixOffsetTransformBase_double_3_3",
    "MatrixOffsetTransformBase_float_3_3",
)


def write_itk_affine(transform: AffineTransform, path: str | Path) -> Path:
    """Write ``transform`` as an ITK text transform file (centre 0), atomically."""
    matrix = RAS_TO_LPS @ transform.matrix @ RAS_TO_LPS
    translation = RAS_TO_LPS @ transform.offset
    numbers = " ".join(f"{value:.17g}" for value in [*matrix.ravel(), *translation])
    text = (
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {numbers}\nFixedParameters: 0 0 0\n"
    )
    with atomic_output(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def read_itk_affine(path: str | Path, option: str = "--affine") -> AffineTransform:
    """Read a 3D affine ITK text transform (as written by ITK, SimpleITK, ANTs or :func:`write_itk_affine`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming ``option`` and the file when it is not one 3D affine ITK text transform.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path} does not exist")
    fields: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ValueError(
            f"{option} {path} is not an ITK text transform (binary file; convert .mat files with ConvertTransformFile 3 in.mat out.txt)"
        ) from None
    for line in lines:
        key, _, value = line.partition(":")
        if value and not key.startswith("#"):
            fields.setdefault(key.strip(), value.strip())
    kind = fields.get("Transform")
    if kind not in AFFINE_TYPES:
        raise ValueError(f"{option} {path} is not a 3D affine ITK text transform (Transform: {kind}); give one of {AFFINE_TYPES[0]}")
    try:
        parameters = np.array(fields["Parameters"].split(), dtype=np.float64)
        centre = np.array(fields.get("FixedParameters", "0 0 0").split(), dtype=np.float64)
    except ValueError:
        raise ValueError(f"{option} {path} has non-numeric Parameters or FixedParameters") from None
    if parameters.shape != (12,) or centre.shape != (3,):
        raise ValueError(f"{option} {path} must have 12 Parameters and 3 FixedParameters, got {parameters.size} and {centre.size}")
    matrix_lps, translation_lps = parameters[:9].reshape(3, 3), parameters[9:]
    offset_lps = translation_lps + centre - matrix_lps @ centre
    return AffineTransform(RAS_TO_LPS @ matrix_lps @ RAS_TO_LPS, RAS_TO_LPS @ offset_lps)


def read_displacement(path: str | Path, option: str = "--displacement") -> tuple[np.ndarray, Grid]:
    """A displacement image, llamareg's ``(X, Y, Z, 3)`` RAS mm or ITK's ``(X, Y, Z, 1, 3)`` LPS mm.

    Returns:
        The field as ``(X, Y, Z, 3)`` float32 in RAS mm (moving point = p + u(p)) and its grid.

    Raises:
        FileNotFoundError, ValueError: naming ``option`` and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path} does not exist")
    try:
        image = nibabel.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel and zlib raise several types for foreign or damaged files
        raise ValueError(f"{option} {path} is not a readable NIfTI image ({type(error).__name__})") from None
    if data.ndim == 5 and data.shape[3] == 1 and data.shape[4] == 3:
        data = data[:, :, :, 0, :] * np.diag(RAS_TO_LPS).astype(np.float32)  # ITK: LPS components
    elif not (data.ndim == 4 and data.shape[3] == 3):
        raise ValueError(
            f"{option} {path} must be a displacement image of shape (X, Y, Z, 3) (llamareg) or (X, Y, Z, 1, 3) (ITK), got {data.shape}"
        )
    if not np.isfinite(data).all():
        raise ValueError(f"{option} {path} holds NaN or infinite displacements")
    return data, Grid(tuple(data.shape[:3]), np.asarray(image.affine, dtype=np.float64))
