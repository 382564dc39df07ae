"""The model's grid and the resampling between it and the images' own voxel grids.

The network sees both images on one *model grid*: the fixed image's world bounding box, with axes
along world R, A, S (the orientation of the MNI152 training data) and the training shape, so the
voxels may be anisotropic. The displacement it predicts there is brought back to the fixed image's
voxel grid in world millimetres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` voxels and the ``(4, 4)`` voxel-index-to-world (RAS mm) affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def world_points(self) -> np.ndarray:
        """World coordinates of every voxel centre, ``(X, Y, Z, 3)``."""
        indices = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in self.shape], indexing="ij"), axis=-1)
        return indices @ self.affine[:3, :3].T + self.affine[:3, 3]


def model_grid(reference: Grid, shape: Sequence[int]) -> Grid:
    """The RAS-aligned grid of ``shape`` voxels covering ``reference``'s world bounding box.

    The box spans the outer faces of the reference's corner voxels (for an oblique reference, the
    axis-aligned box around them); voxel centres sit half a voxel inside it.

    Example:
        >>> lps = np.diag([-2.0, -2.0, 2.0, 1.0]); lps[:3, 3] = [63.0, 63.0, 0.0]
        >>> grid = model_grid(Grid((64, 64, 32), lps), (32, 32, 16))
        >>> grid.affine.diagonal()[:3].tolist(), grid.affine[:3, 3].tolist()
        ([4.0, 4.0, 4.0], [-62.0, -62.0, 1.0])
    """
    shape = tuple(int(s) for s in shape)
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in reference.shape], indexing="ij")).reshape(3, -1)
    world = reference.affine[:3, :3] @ corners + reference.affine[:3, 3:4]
    low, high = world.min(axis=1), world.max(axis=1)
    spacing = (high - low) / np.asarray(shape)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = low + spacing / 2
    return Grid(shape, affine)


def resample(data: np.ndarray, source_affine: np.ndarray, target: Grid, order: int, cval: float = 0.0) -> np.ndarray:
    """Resample a volume onto ``target`` (order 1: linear, order 0: nearest), ``cval`` outside it.

    For linear resampling to coarser voxels the volume is first smoothed with the anti-aliasing rule
    the training data used (Gaussian sigma = (factor - 1) / 2 source voxels along each source axis).
    """
    target_to_source = np.linalg.inv(source_affine) @ target.affine
    if order == 1:
        # Length, in source voxels, of one target voxel step along each source axis.
        factors = np.abs(target_to_source[:3, :3]).max(axis=1)
        sigma = np.maximum((factors - 1) / 2, 0)
        if sigma.any():
            data = ndimage.gaussian_filter(data.astype(np.float32), sigma)
    # grid-constant: a point a rounding error past the last voxel centre still interpolates the volume.
    return ndimage.affine_transform(
        data, target_to_source[:3, :3], target_to_source[:3, 3], output_shape=target.shape,
        order=order, mode="grid-constant", cval=cval,
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
