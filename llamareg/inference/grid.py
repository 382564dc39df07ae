"""The model's grid and the resampling between it and the images' own voxel grids.

The network sees both images on one *model grid*: isotropic voxels at the spacing the model was
trained at (``data.spacing_mm``), axes along world R, A, S (the orientation of the MNI152 training
data), covering the fixed image's world bounding box centred on its centre, with each side rounded to
the nearest multiple of 16 voxels (the network's coarsest stride). The displacement it predicts there is
brought back to the fixed image's voxel grid in world millimetres.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from llamareg.checks import check_shape

MODEL_MULTIPLE = 16  # every model-grid side is a multiple of this (LLaMA-Reg's token stride)
# A box of 156.0000001 mm at 3.25 mm is 48 voxels, not 49: floating-point noise must not add a voxel.
_FIT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` voxels and the ``(4, 4)`` voxel-index-to-world (RAS mm) affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    def world_points(self) -> np.ndarray:
        """World coordinates of every voxel centre, ``(X, Y, Z, 3)``."""
        indices = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in self.shape], indexing="ij"), axis=-1)
        return indices @ self.affine[:3, :3].T + self.affine[:3, 3]


def check_spacing(spacing: float) -> float:
    """``spacing`` as a float, or ValueError naming ``--spacing`` unless it is a positive finite number of mm."""
    try:
        value = float(spacing)
    except (TypeError, ValueError):
        raise ValueError(f"--spacing must be a positive number of millimetres, got {spacing!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--spacing must be a positive number of millimetres, got {spacing!r}")
    return value


def parse_shape(text: str | Sequence[str]) -> tuple[int, int, int]:
    """The ``--shape`` option, ``"D H W"`` or ``"D,H,W"`` (or the words argparse split it into), checked.

    Example:
        >>> parse_shape(["64", "80", "64"]), parse_shape("64,80,64")
        ((64, 80, 64), (64, 80, 64))
    """
    joined = text if isinstance(text, str) else " ".join(text)
    words = [word for word in re.split(r"[,\s]+", joined) if word]
    try:
        values = tuple(int(word) for word in words)
    except ValueError:
        raise ValueError(f"--shape must be three positive multiples of {MODEL_MULTIPLE} (D H W or D,H,W), got '{joined}'") from None
    return check_shape(values, "--shape", multiple=MODEL_MULTIPLE)


def grid_options(spacing: str | None, shape: str | Sequence[str] | None) -> tuple[float | None, tuple[int, int, int] | None]:
    """The command-line options ``--spacing MM`` and ``--shape D H W`` checked, None where not given.

    Raises:
        ValueError: naming the option that is not a positive number of mm / three positive multiples of 16.
    """
    return (None if spacing is None else check_spacing(spacing)), (None if shape is None else parse_shape(shape))


def world_box(reference: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Low and high world corners of the axis-aligned box around ``reference``'s voxels' outer faces."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in reference.shape], indexing="ij")).reshape(3, -1)
    world = reference.affine[:3, :3] @ corners + reference.affine[:3, 3:4]
    return world.min(axis=1), world.max(axis=1)


def fit_shape(extent_mm: Sequence[float], spacing: float, multiple: int = MODEL_MULTIPLE) -> tuple[int, int, int]:
    """Voxels of ``spacing`` mm covering ``extent_mm`` along each axis, rounded to the nearest multiple of
    ``multiple`` (halves up, at least one multiple).

    Rounding to the nearest rather than up keeps the network's grid, and so its time, close to the
    image's own box: rounding a 49-voxel side up to 64 would make the network do a third more work on
    padding. The box loses less than half a multiple per axis, split between its two ends (at most
    about 13 mm at 3.25 mm), which is background in a brain image's field of view; outside the grid the
    displacement takes its nearest value.

    Example:
        >>> fit_shape((197.0, 233.0, 189.0), 3.25), fit_shape((160.0, 192.0, 160.0), 3.25)
        ((64, 80, 64), (48, 64, 48))
    """
    voxels = [math.ceil(float(e) / spacing - _FIT_TOLERANCE) for e in extent_mm]
    return tuple(max(multiple, math.floor(v / multiple + 0.5) * multiple) for v in voxels)


def model_grid(reference: Grid, spacing: float, shape: Sequence[int] | None = None, multiple: int = MODEL_MULTIPLE) -> Grid:
    """The RAS-aligned grid of isotropic ``spacing`` mm voxels centred on ``reference``'s world box.

    The box spans the outer faces of the reference's corner voxels (for an oblique reference, the
    axis-aligned box around them). Without ``shape`` the grid covers the box, each side rounded to the
    nearest multiple of ``multiple`` voxels (:func:`fit_shape`, padded or cropped equally at both ends); a given ``shape``
    crops or pads the box about its centre instead.

    Args:
        reference: the fixed image's grid.
        spacing: voxel size in mm (the model's training spacing, or ``--spacing``).
        shape: the grid's shape (``--shape``), or None to fit the box.
        multiple: what every side of a fitted shape is a multiple of.

    Example:
        >>> lps = np.diag([-2.0, -2.0, 2.0, 1.0]); lps[:3, 3] = [63.0, 63.0, 0.0]
        >>> grid = model_grid(Grid((64, 64, 30), lps), 4.0)
        >>> grid.shape, grid.affine.diagonal()[:3].tolist(), grid.affine[:3, 3].tolist()
        ((32, 32, 16), [4.0, 4.0, 4.0], [-62.0, -62.0, -1.0])
    """
    spacing = check_spacing(spacing)
    low, high = world_box(reference)
    shape = fit_shape(high - low, spacing, multiple) if shape is None else tuple(int(s) for s in shape)
    centre = (low + high) / 2
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre - spacing * (np.asarray(shape) - 1) / 2
    return Grid(shape, affine)


def level_grid(reference: Grid, factor: int) -> Grid:
    """``reference`` coarsened ``factor`` times along each axis (same axes and world box start).

    Voxel ``i`` of the result is centred on the reference's voxel ``factor * i + (factor - 1) / 2``,
    the geometry of ``F.interpolate(..., align_corners=False)`` between the two; sides are rounded up,
    so the coarse grid covers the reference's voxels.

    Example:
        >>> coarse = level_grid(Grid((5, 4, 4), np.eye(4)), 2)
        >>> coarse.shape, coarse.affine.diagonal()[:3].tolist(), coarse.affine[:3, 3].tolist()
        ((3, 2, 2), [2.0, 2.0, 2.0], [0.5, 0.5, 0.5])
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    shape = tuple(math.ceil(n / factor) for n in reference.shape)
    affine = reference.affine.copy()
    affine[:3, :3] = reference.affine[:3, :3] * factor
    affine[:3, 3] = reference.affine[:3, :3] @ np.full(3, (factor - 1) / 2) + reference.affine[:3, 3]
    return Grid(shape, affine)


def antialias_sigma(source_affine: np.ndarray, target: Grid) -> np.ndarray:
    """Gaussian sigma, in source voxels along each source axis, that the training data used before
    resampling to coarser voxels: ``(factor - 1) / 2`` where ``factor`` is the length, in source
    voxels, of one target voxel step along that axis (0 where the target is not coarser)."""
    target_to_source = np.linalg.inv(source_affine) @ target.affine
    factors = np.abs(target_to_source[:3, :3]).max(axis=1)
    return np.maximum((factors - 1) / 2, 0)


def resample(data: np.ndarray, source_affine: np.ndarray, target: Grid, order: int, cval: float = 0.0) -> np.ndarray:
    """Resample a volume onto ``target`` (order 1: linear, order 0: nearest), ``cval`` outside it.

    For linear resampling to coarser voxels the volume is first smoothed with the anti-aliasing rule
    the training data used (Gaussian sigma = (factor - 1) / 2 source voxels along each source axis).
    """
    target_to_source = np.linalg.inv(source_affine) @ target.affine
    if order == 1:
        sigma = antialias_sigma(source_affine, target)
        if sigma.any():
            data = ndimage.gaussian_filter(data.astype(np.float32), sigma)
    # grid-constant: a point a rounding error past the last voxel centre still interpolates the volume.
    return ndimage.affine_transform(
        data,
        target_to_source[:3, :3],
        target_to_source[:3, 3],
        output_shape=target.shape,
        order=order,
        mode="grid-constant",
        cval=cval,
    )


def sample_world(data: np.ndarray, affine: np.ndarray, points: np.ndarray, order: int, cval: float = 0.0) -> np.ndarray:
    """Values of a volume at world points ``(..., 3)`` (order 1: linear, 0: nearest), ``cval`` outside."""
    voxels = (points - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    coordinates = np.moveaxis(voxels, -1, 0)
    return ndimage.map_coordinates(data, coordinates, order=order, mode="grid-constant", cval=cval)


def displacement_to_world(flow: np.ndarray, grid: Grid, target: Grid) -> np.ndarray:
    """A model-grid displacement (voxels) as world millimetres at ``target``'s voxel centres.

    Args:
        flow: ``(3, D, H, W)`` displacement on ``grid`` in its voxel units, channel k along axis k
            (warped(x) = moving(x + u(x))).
        grid: the model grid the flow lives on.
        target: the grid to express it on (the fixed image's).

    Returns:
        ``(X, Y, Z, 3)`` float32 displacement ``d`` in world (RAS) mm such that the point ``p`` of the
        fixed image corresponds to ``p + d(p)`` in the moving image. Outside the model grid's voxel
        centres the nearest value is used.
    """
    points = target.world_points()
    voxels = np.moveaxis((points - grid.affine[:3, 3]) @ np.linalg.inv(grid.affine[:3, :3]).T, -1, 0)
    components = [ndimage.map_coordinates(flow[k], voxels, order=1, mode="nearest") for k in range(3)]
    return (np.stack(components, axis=-1) @ grid.affine[:3, :3].T).astype(np.float32)
