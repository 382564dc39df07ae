"""A saved registration (displacement field and/or affine) applied to points and images.

The chain follows ANTs' ``antsApplyTransforms -t displacement -t affine``: a fixed point ``p`` goes
through the displacement first, then the affine, to its moving point ``T(p + d(p))``. llamareg's own
``displacement.nii.gz`` already holds any pre-alignment, so it is used alone; an ANTs registration's
warp and affine are given together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llamareg.inference.affine import AffineTransform
from llamareg.inference.fields import invert_at, sample_field
from llamareg.inference.grid import Grid, sample_world
from llamareg.inference.images import NiftiVolume


@dataclass(frozen=True)
class SavedTransform:
    """Fixed points to moving points: ``affine(p + displacement(p))``, either part optional.

    Attributes:
        displacement: ``(X, Y, Z, 3)`` RAS mm on ``grid``, or None.
        grid: the displacement's grid (the fixed image's), or None.
        affine: an affine applied after the displacement, or None.
    """

    displacement: np.ndarray | None = None
    grid: Grid | None = None
    affine: AffineTransform | None = None

    def __post_init__(self) -> None:
        if self.displacement is None and self.affine is None:
            raise ValueError("a transform needs a displacement field, an affine or both")
        if (self.displacement is None) != (self.grid is None):
            raise ValueError("a displacement field needs its grid and a grid its displacement field")

    def on_own_grid(self, grid: Grid) -> bool:
        """Whether ``grid`` is the displacement's own grid (then its values are used as they are)."""
        return self.grid is not None and grid.shape == self.grid.shape and np.array_equal(grid.affine, self.grid.affine)

    def moving_points(self, fixed: Grid) -> np.ndarray:
        """The moving points ``(X, Y, Z, 3)`` of ``fixed``'s voxel centres."""
        points = fixed.world_points()
        if self.displacement is not None:
            field = self.displacement if self.on_own_grid(fixed) else sample_field(self.displacement, self.grid, points)
            points = points + field
        return points if self.affine is None else self.affine.apply(points)

    def fixed_points(self, moving: Grid) -> tuple[np.ndarray, float]:
        """The fixed points ``(X, Y, Z, 3)`` of ``moving``'s voxel centres (the inverse map), and the
        largest residual of the field's inversion in mm (0 for an affine alone)."""
        points = moving.world_points()
        if self.affine is not None:
            points = self.affine.inverse().apply(points)
        if self.displacement is None:
            return points, 0.0
        found, residual, _ = invert_at(self.displacement, self.grid, points)
        return found, residual


def warp_volume(volume: NiftiVolume, points: np.ndarray, labels: bool) -> np.ndarray:
    """``volume`` sampled at world ``points``: linear with its minimum outside (float32), or nearest
    with background 0 outside for labels (int64)."""
    if labels:
        return sample_world(volume.data, volume.affine, points, order=0, cval=0).astype(np.int64)
    return sample_world(volume.data, volume.affine, points, order=1, cval=float(volume.data.min())).astype(np.float32)
