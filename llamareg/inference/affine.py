"""Affine (12 parameters) or rigid (6) pre-alignment of a moving image to a fixed one, in world mm.

Users' scans are rarely aligned in world coordinates; the paper aligned every knee scan with ANTs'
affine step before training and testing. :func:`estimate_affine` does that step here:

* Initialisation by the centre of mass (first moments) of the normalised intensities: the
  transform starts as the translation taking the fixed image's centre of mass to the moving one's.
* Coarse to fine on three isotropic RAS grids over the fixed image's world box (4x, 2x and 1x the
  finest spacing, :func:`affine_levels`), Adam on the registration's own similarity (the checkpoint's
  ``train.similarity``: MSE or local NCC) between the fixed image resampled onto the level and the
  moving image sampled, at every step, from its own voxels (Gaussian-smoothed for the level, as the
  training data were) at the transformed points. The step size decays to zero on each level (cosine),
  so the result settles instead of wandering by one step.
* Parameters are all millimetres: the translation, and the linear part as ``I + D / R`` where ``D`` is
  the displacement it causes at ``R`` = half the fixed box's diagonal (for ``rigid``, a rotation
  vector of that many mm of arc at ``R``). One step size then suits both, on every level.

The result maps fixed points to moving points (:class:`AffineTransform`), the convention of the
displacement field and of ITK/ANTs transforms; applying it to the moving image is exactly a change of
its header (:meth:`AffineTransform.aligned_affine`), so the deformable step reads the moving voxels
once, through the composed field.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from llamareg.inference.grid import Grid, antialias_sigma, resample, sample_world, world_box
from llamareg.inference.images import NiftiVolume, normalise_intensities
from llamareg.losses.similarity import similarity_loss

LEVEL_FACTORS = (4, 2, 1)
STEPS_PER_LEVEL = (150, 80, 30)  # a coarse step costs 1/64 of a fine one: most of the search happens there
MIN_SPACING_MM = 2.0  # finer grids do not move the estimate by a tenth of a voxel and cost 8x per halving
MAX_LEVEL_VOXELS = 2_000_000
# Adam's first step on each level, in that level's voxels: finer levels only polish what coarser ones found.
LEARNING_RATES_VOXELS = (0.2, 0.1, 0.05)


@dataclass(frozen=True)
class AffineTransform:
    """A world (RAS mm) map of fixed points ``p`` to moving points ``matrix @ p + offset``."""

    matrix: np.ndarray
    offset: np.ndarray

    @classmethod
    def identity(cls) -> AffineTransform:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_homogeneous(cls, matrix: np.ndarray) -> AffineTransform:
        """From a ``(4, 4)`` homogeneous matrix."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.allclose(matrix[3], [0, 0, 0, 1]):
            raise ValueError(f"an affine transform needs a (4, 4) matrix with last row 0 0 0 1, got {matrix.shape}")
        return cls(matrix[:3, :3].copy(), matrix[:3, 3].copy())

    @property
    def homogeneous(self) -> np.ndarray:
        """The ``(4, 4)`` homogeneous matrix."""
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = self.matrix, self.offset
        return out

    def apply(self, points: np.ndarray) -> np.ndarray:
        """The moving points of fixed points ``(..., 3)``."""
        return points @ self.matrix.T + self.offset

    def inverse(self) -> AffineTransform:
        return AffineTransform.from_homogeneous(np.linalg.inv(self.homogeneous))

    def displacement_on(self, grid: Grid) -> np.ndarray:
        """The transform as a displacement ``(X, Y, Z, 3)`` float32 on ``grid`` (moving point = p + d(p))."""
        points = grid.world_points()
        return (self.apply(points) - points).astype(np.float32)

    def aligned_affine(self, moving_affine: np.ndarray) -> np.ndarray:
        """The voxel-to-world affine that places the moving image's voxels in the fixed image's frame.

        The moving voxel at world ``q`` is seen at the fixed point ``p`` with ``q = T(p)``: the aligned
        image at ``p`` is the moving image at ``T(p)``, i.e. the moving image resampled through ``T``,
        without resampling.
        """
        return np.linalg.inv(self.homogeneous) @ moving_affine


@dataclass(frozen=True)
class AffineResult:
    """The estimated transform and what each level did (similarity before and after, seconds)."""

    transform: AffineTransform
    rigid: bool
    levels: tuple[dict, ...]
    seconds: float

    def to_dict(self) -> dict:
        return {
            "rigid": self.rigid,
            "matrix": self.transform.matrix.tolist(),
            "offset_mm": self.transform.offset.tolist(),
            "seconds": self.seconds,
            "levels": list(self.levels),
        }


def centre_of_mass(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The intensity-weighted centre of a non-negative volume in world mm."""
    voxel = np.asarray(ndimage.center_of_mass(data))
    return affine[:3, :3] @ voxel + affine[:3, 3]


def affine_levels(fixed: Grid) -> list[Grid]:
    """RAS grids over ``fixed``'s world box, coarsest first, at :data:`LEVEL_FACTORS` times the finest
    spacing: the fixed voxel size (its mean side) but no finer than :data:`MIN_SPACING_MM`, coarsened
    until the finest level has at most :data:`MAX_LEVEL_VOXELS` voxels.

    Example:
        >>> [level.spacing[0] for level in affine_levels(Grid((197, 233, 189), np.eye(4)))]
        [8.0, 4.0, 2.0]
    """
    low, high = world_box(fixed)
    finest = max(float(np.mean(fixed.spacing)), MIN_SPACING_MM)
    while math.prod(np.ceil((high - low) / finest)) > MAX_LEVEL_VOXELS:
        finest *= 1.25
    grids = []
    for factor in LEVEL_FACTORS:
        spacing = finest * factor
        shape = tuple(int(max(2, math.ceil(side / spacing))) for side in high - low)
        affine = np.diag([spacing, spacing, spacing, 1.0])
        affine[:3, 3] = (low + high) / 2 - spacing * (np.asarray(shape) - 1) / 2
        grids.append(Grid(shape, affine))
    return grids


class _AffineParameters(torch.nn.Module):
    """``T(p) = centre + start + translation + L (p - centre)`` with all parameters in mm (see module doc)."""

    def __init__(self, centre: np.ndarray, start: np.ndarray, radius: float, rigid: bool) -> None:
        super().__init__()
        self.register_buffer("centre", torch.as_tensor(centre, dtype=torch.float64))
        self.register_buffer("start", torch.as_tensor(start, dtype=torch.float64))
        self.radius, self.rigid = radius, rigid
        self.translation = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.linear = torch.nn.Parameter(torch.zeros(3 if rigid else 9, dtype=torch.float64))

    def matrix(self) -> torch.Tensor:
        if not self.rigid:
            return torch.eye(3, dtype=torch.float64) + self.linear.view(3, 3) / self.radius
        angle = self.linear / self.radius  # a rotation vector (radians)
        x, y, z = angle
        zero = torch.zeros((), dtype=torch.float64)
        skew = torch.stack([torch.stack([zero, -z, y]), torch.stack([z, zero, -x]), torch.stack([-y, x, zero])])
        return torch.linalg.matrix_exp(skew)

    def transform(self) -> AffineTransform:
        with torch.no_grad():
            matrix = self.matrix()
            offset = self.centre + self.start + self.translation - matrix @ self.centre
        return AffineTransform(matrix.numpy().copy(), offset.numpy().copy())


def _moving_sampler(data: np.ndarray, affine: np.ndarray, level: Grid):
    """A function from world points ``(N, 3)`` (torch, float64) to the moving image smoothed for ``level``."""
    sigma = antialias_sigma(affine, level)
    smoothed = ndimage.gaussian_filter(data, sigma) if sigma.any() else data
    volume = torch.from_numpy(np.ascontiguousarray(smoothed, dtype=np.float32))[None, None]
    world_to_voxel = torch.from_numpy(np.linalg.inv(affine))
    # align_corners=True: -1 and 1 are the first and last voxel centres; grid_sample's x indexes the last axis.
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in data.shape], dtype=torch.float64)

    def sample(points: torch.Tensor) -> torch.Tensor:
        voxels = points @ world_to_voxel[:3, :3].T + world_to_voxel[:3, 3]
        normalised = (voxels * scale - 1).flip(-1).float()
        return F.grid_sample(volume, normalised.view(1, *level.shape, 3), mode="bilinear", padding_mode="zeros", align_corners=True)

    return sample


def estimate_affine(
    fixed: NiftiVolume, moving: NiftiVolume, similarity: str = "mse", rigid: bool = False, steps: tuple[int, ...] = STEPS_PER_LEVEL
) -> AffineResult:
    """Estimate the affine (or rigid) transform taking ``fixed``'s points to ``moving``'s (see module doc).

    Args:
        fixed: the image whose frame the transform starts from.
        moving: the image to align to it.
        similarity: ``mse`` or ``ncc`` (:func:`~llamareg.losses.similarity.similarity_loss`).
        rigid: rotation and translation only (6 parameters) instead of the full 12.
        steps: Adam steps on each of the levels of :func:`affine_levels`, coarsest first.

    Raises:
        ValueError: for ``steps`` that are not one non-negative count per level.
    """
    if len(steps) != len(LEVEL_FACTORS) or any(not isinstance(s, int) or s < 0 for s in steps):
        raise ValueError(f"steps must be {len(LEVEL_FACTORS)} non-negative step counts (coarsest level first), got {steps}")
    started = time.perf_counter()
    fixed_data, moving_data = normalise_intensities(fixed.data), normalise_intensities(moving.data)
    fixed_grid = Grid(fixed.shape, fixed.affine)
    low, high = world_box(fixed_grid)
    centre = (low + high) / 2
    start = centre_of_mass(moving_data, moving.affine) - centre_of_mass(fixed_data, fixed.affine)
    parameters = _AffineParameters(centre, start, radius=float(np.linalg.norm(high - low)) / 2, rigid=rigid)
    loss_of = similarity_loss(similarity)
    records = []
    for level, level_steps, level_rate in zip(affine_levels(fixed_grid), steps, LEARNING_RATES_VOXELS):
        level_started = time.perf_counter()
        target = torch.from_numpy(resample(fixed_data, fixed.affine, level, order=1).astype(np.float32))[None, None]
        sample = _moving_sampler(moving_data, moving.affine, level)
        points = torch.from_numpy(level.world_points().reshape(-1, 3))
        centred = points - parameters.centre

        def loss() -> torch.Tensor:
            moved = parameters.centre + parameters.start + parameters.translation + centred @ parameters.matrix().T
            return loss_of(sample(moved), target)

        learning_rate = level_rate * level.spacing[0]
        optimiser = torch.optim.Adam(parameters.parameters(), lr=learning_rate)
        with torch.no_grad():
            before = float(loss())
        for step in range(level_steps):
            for group in optimiser.param_groups:
                group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * step / level_steps))
            optimiser.zero_grad()
            value = loss()
            value.backward()
            optimiser.step()
        with torch.no_grad():
            after = float(loss())
        records.append(
            {
                "spacing_mm": level.spacing[0],
                "shape": list(level.shape),
                "steps": level_steps,
                "loss_before": before,
                "loss_after": after,
                "seconds": time.perf_counter() - level_started,
            }
        )
    return AffineResult(parameters.transform(), rigid, tuple(records), time.perf_counter() - started)


class SubjectAligner:
    """Align subjects to a reference image and resample them onto its grid (the shard builder's
    ``--align-to``): :func:`estimate_affine` on the intensities, then the image (linear) and its labels
    (nearest) sampled at the transformed reference points, so every stored subject lies on one grid.

    Args:
        reference: the image every subject is aligned to (e.g. an atlas or one chosen subject).
        similarity: ``ncc`` (default: robust to the intensity differences between subjects) or ``mse``.
        rigid: rotation and translation only.
    """

    def __init__(self, reference: NiftiVolume, similarity: str = "ncc", rigid: bool = False) -> None:
        self.reference, self.similarity, self.rigid = reference, similarity, rigid
        self.shape, self.affine = reference.shape, reference.affine
        self.points = Grid(self.shape, self.affine).world_points()  # the same for every subject

    def __call__(self, image: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """``(image, labels, affine, record)`` of one subject aligned onto the reference grid."""
        subject = NiftiVolume(image.astype(np.float32), affine, None, self.reference.path)
        result = estimate_affine(self.reference, subject, self.similarity, self.rigid)
        points = result.transform.apply(self.points)
        aligned = sample_world(image.astype(np.float32), affine, points, order=1, cval=float(image.min()))
        aligned_labels = sample_world(labels, affine, points, order=0, cval=0).astype(labels.dtype)
        return aligned, aligned_labels, self.affine.copy(), result.to_dict()
