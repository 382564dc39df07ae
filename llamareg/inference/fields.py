"""World-space displacement fields on an image's voxel grid: sampling, inverting, Jacobian maps.

A field ``d`` is ``(X, Y, Z, 3)`` in RAS mm on a grid: the grid's point ``p`` maps to ``p + d(p)``
(llamareg's ``displacement.nii.gz``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from llamareg.inference.grid import Grid

INVERSE_ITERATIONS = 50
INVERSE_TOLERANCE_VOXELS = 1e-3


def sample_field(displacement: np.ndarray, grid: Grid, points: np.ndarray) -> np.ndarray:
    """The field at world points ``(..., 3)``: trilinear inside the grid, the nearest voxel's value outside."""
    voxels = (points - grid.affine[:3, 3]) @ np.linalg.inv(grid.affine[:3, :3]).T
    coordinates = np.moveaxis(voxels, -1, 0)
    return np.stack([ndimage.map_coordinates(displacement[..., k], coordinates, order=1, mode="nearest") for k in range(3)], axis=-1)


def fit_linear(displacement: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares affine ``(A, b)`` of the map ``p -> p + d(p)`` over the grid's points."""
    points = grid.world_points().reshape(-1, 3)
    design = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, points + displacement.reshape(-1, 3), rcond=None)
    return solution[:3].T, solution[3]


@dataclass(frozen=True)
class Inverse:
    """Where each target point came from, and how well.

    Attributes:
        displacement: ``(X, Y, Z, 3)`` on the target grid: its point ``q`` maps to ``q + v(q)``, with
            ``q + v(q) + d(q + v(q)) = q``.
        residual_mm: the largest remaining ``|p + d(p) - q|``.
        iterations: iterations taken.
    """

    displacement: np.ndarray
    residual_mm: float
    iterations: int


def invert_at(
    displacement: np.ndarray,
    grid: Grid,
    points: np.ndarray,
    iterations: int = INVERSE_ITERATIONS,
    tolerance_voxels: float = INVERSE_TOLERANCE_VOXELS,
) -> tuple[np.ndarray, float, int]:
    """Solve ``p + d(p) = q`` for every world point ``q`` of ``points`` (``(..., 3)``).

    Fixed-point iteration preconditioned by the field's affine part ``A``:
    ``p <- p - A^-1 (p + d(p) - q)``, started from ``A^-1 (q - b)``. Without the preconditioner the
    plain iteration ``p <- q - d(p)`` contracts only by the size of ``d``'s gradient, which an affine
    part (a 15 degree rotation) makes slow; with it, by the gradient of the non-linear rest.

    Returns:
        The points ``p``, the largest residual in mm and the iterations taken.
    """
    matrix, offset = fit_linear(displacement, grid)
    inverse = np.linalg.inv(matrix)
    found = (points - offset) @ inverse.T
    tolerance = tolerance_voxels * min(grid.spacing)
    residual, taken = np.inf, 0
    for taken in range(1, iterations + 1):
        error = found + sample_field(displacement, grid, found) - points
        residual = float(np.linalg.norm(error, axis=-1).max())
        if residual < tolerance:
            break
        found = found - error @ inverse.T
    return found, residual, taken


def invert_displacement(displacement: np.ndarray, grid: Grid, target: Grid, iterations: int = INVERSE_ITERATIONS) -> Inverse:
    """The inverse of a field, on ``target``'s grid (e.g. the moving image's), see :func:`invert_at`."""
    points = target.world_points()
    found, residual, taken = invert_at(displacement, grid, points, iterations)
    return Inverse((found - points).astype(np.float32), residual, taken)


def jacobian_determinant_map(displacement: np.ndarray, grid: Grid) -> np.ndarray:
    """``det(I + dd/dp)`` at every voxel, derivatives in world mm (central differences, one-sided at the
    border): the moving volume per fixed volume of the map ``p -> p + d(p)``; <= 0 where it folds.

    Example:
        >>> grid = Grid((8, 8, 8), np.diag([2.0, 2.0, 2.0, 1.0]))
        >>> scaled = 0.1 * grid.world_points()  # p -> 1.1 p
        >>> round(float(jacobian_determinant_map(scaled, grid).mean()), 4)
        1.331
    """
    by_index = np.stack(np.gradient(displacement.astype(np.float64), axis=(0, 1, 2)), axis=-1)  # [..., component, axis]
    gradient = by_index @ np.linalg.inv(grid.affine[:3, :3])  # chain rule: d index / d world
    return np.linalg.det(gradient + np.eye(3)).astype(np.float32)
