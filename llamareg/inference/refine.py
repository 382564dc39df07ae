"""Instance optimisation: refine the network's displacement on one pair, coarse to fine, up to the
fixed image's own resolution.

The network works on the coarse model grid; refinement continues on a pyramid of grids in the fixed
image's space (:func:`pyramid_factors`): its own voxel grid coarsened 4, 2 and 1 times, keeping only
levels no coarser than the model grid. The finest level has at most :data:`MAX_REFINE_VOXELS` voxels:
a larger image is refined up to its first halving under that size, and the last field interpolated
(trilinearly) up to its grid. The network's field is brought onto the coarsest level; on each level Adam
minimises the training objective's full-resolution term,
``similarity(moving warped, fixed) + lambda * diffusion(field)`` with the similarity and lambda of
:func:`pair_objective`, and the field with the lowest loss seen on a level (the starting one
included, so a level never makes its own loss worse) is upsampled to start the next.

* The moving image is never resampled twice: at each step it is sampled from its own voxels (its
  normalised intensities, Gaussian-smoothed for levels coarser than it, as the training data were)
  at the level's world points moved by the field, through one world-to-moving-voxel affine.
* The fixed image is resampled onto each level once (anti-aliased likewise; the finest level at
  factor 1 is its own voxels).
* The field lives in the voxel units of its level, channel ``k`` along the fixed grid's axis ``k``.
  The diffusion term (mean squared difference of neighbouring voxels' displacements, both in those
  voxels) is then the squared displacement gradient, a dimensionless number that does not depend on
  the voxel size, and both terms are means over the level's voxels: lambda therefore means the same on
  every level as in training, with no rescaling. (Local NCC's window stays ``window`` voxels of each
  level, as in the objective.)
* ``N`` steps are split across the levels by :func:`split_steps`: each finer level gets half the
  steps of the one before (4:2:1 for three levels), because a finer step costs ~8 times more and
  starts from a field the coarser levels already fitted; a level left with no step is skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from llamareg.config import Config
from llamareg.inference.grid import Grid, antialias_sigma, displacement_to_world, level_grid, resample
from llamareg.training.objective import MultiScaleObjective

DEFAULT_LR = 0.05  # voxels of the level per Adam step
MAX_LEVELS = 3  # levels at 4x, 2x and 1x the fixed image's voxel size
# The finest level's voxel budget (e.g. 200^3). On 2 CPU cores a step costs about 0.2-0.3 us per voxel
# with MSE and 1 us with local NCC (the similarity's own box sums dominate), so a level of this size
# costs 2-8 s a step. A larger image (a 1 mm MNI brain, 197x233x189 = 8.7M voxels) is refined on its
# 2x grid (1.1M voxels: ~0.3 s a step with MSE) and the field interpolated; refining its 1 mm level as
# well doubled the time of --refine 100 without raising Dice.
MAX_REFINE_VOXELS = 8_000_000


@dataclass(frozen=True)
class LevelRecord:
    """What refinement did on one level.

    Attributes:
        shape: the level's grid shape.
        spacing_mm: its voxel size along the fixed image's axes.
        steps: Adam steps taken there.
        loss_before: loss of the field the level started from.
        loss_after: lowest loss seen (the field passed on).
        seconds: wall time on the level, setup included.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    steps: int
    loss_before: float
    loss_after: float
    seconds: float

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "steps": self.steps,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Refinement:
    """The refined displacement and what each level did.

    Attributes:
        displacement: ``(X, Y, Z, 3)`` float32 on the fixed image's voxel grid, world (RAS) mm (the
            convention of :func:`~llamareg.inference.grid.displacement_to_world`).
        levels: one record per level, coarsest first.
        seconds: wall time of the whole refinement.
    """

    displacement: np.ndarray
    levels: tuple[LevelRecord, ...]
    seconds: float

    @property
    def steps(self) -> int:
        return sum(level.steps for level in self.levels)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "seconds": self.seconds, "levels": [level.to_dict() for level in self.levels]}


def check_options(steps: int, lr: float) -> None:
    """Check the command-line options ``--refine`` (>= 0 steps) and ``--refine-lr`` (> 0).

    Raises:
        ValueError: naming the option.
    """
    if steps < 0:
        raise ValueError(f"--refine must be >= 0 steps, got {steps}")
    if not lr > 0:
        raise ValueError(f"--refine-lr must be positive, got {lr}")


def pair_objective(config: Config) -> MultiScaleObjective:
    """The training objective's full-resolution term for ``config`` (one scale, weight 1)."""
    return MultiScaleObjective(config.train.similarity, config.train.reg_weight, scale_weights=[1.0])


def pyramid_factors(fixed: Grid, coarsest_mm: float, max_voxels: int = MAX_REFINE_VOXELS, max_levels: int = MAX_LEVELS) -> list[int]:
    """How many times each level coarsens the fixed grid, coarsest first (e.g. ``[4, 2, 1]``).

    The finest level is the fixed grid itself, or the first of its halvings with at most
    ``max_voxels`` voxels; coarser levels (halving again) are added while the largest voxel side stays
    within ``coarsest_mm`` (the model grid's spacing), up to ``max_levels`` levels.

    Example:
        >>> pyramid_factors(Grid((160, 192, 160), np.eye(4)), coarsest_mm=3.25)  # 4.9M voxels of 1 mm
        [2, 1]
        >>> pyramid_factors(Grid((160, 192, 160), np.diag([0.8, 0.8, 0.8, 1.0])), coarsest_mm=3.25)
        [4, 2, 1]
        >>> pyramid_factors(Grid((197, 233, 189), np.eye(4)), coarsest_mm=3.25)  # 8.7M: refined at 2 mm
        [2]
    """
    if max_voxels < 1 or max_levels < 1:
        raise ValueError(f"max_voxels and max_levels must be positive, got {max_voxels} and {max_levels}")
    finest = 1
    while math.prod(level_grid(fixed, finest).shape) > max_voxels:
        finest *= 2
    factors = [finest]
    largest_side = max(fixed.spacing)
    while len(factors) < max_levels and largest_side * factors[-1] * 2 <= coarsest_mm * (1 + 1e-6):
        factors.append(factors[-1] * 2)
    return factors[::-1]


def split_steps(steps: int, levels: int) -> list[int]:
    """``steps`` split across ``levels`` levels, coarsest first, each level half of the one before
    (weights 2^(levels-1) : ... : 2 : 1), rounded so they add up to ``steps``.

    Example:
        >>> split_steps(100, 3), split_steps(100, 2), split_steps(5, 3)
        ([57, 29, 14], [67, 33], [3, 1, 1])
    """
    if steps < 0 or levels < 1:
        raise ValueError(f"need steps >= 0 and levels >= 1, got {steps} and {levels}")
    weights = [2.0 ** (levels - 1 - k) for k in range(levels)]
    bounds = [round(steps * sum(weights[: k + 1]) / sum(weights)) for k in range(levels)]
    return [high - low for low, high in zip([0, *bounds[:-1]], bounds)]


def upsample_field(field: torch.Tensor, factor: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """A channels-last field ``(1, D, H, W, 3)`` on a level ``factor`` times coarser than the target
    :func:`~llamareg.inference.grid.level_grid` of ``shape``, on that grid and in its voxels.

    Example:
        >>> upsample_field(torch.ones(1, 2, 2, 2, 3), 2, (3, 4, 4)).shape
        torch.Size([1, 3, 4, 4, 3])
    """
    if factor == 1:
        return field
    size = [factor * n for n in field.shape[1:4]]
    # align_corners=False is the level grids' geometry; the coarse grid's last row may overhang: crop it.
    resized = F.interpolate(field.permute(0, 4, 1, 2, 3), size=size, mode="trilinear", align_corners=False)
    resized = resized[:, :, : shape[0], : shape[1], : shape[2]] * factor
    return resized.permute(0, 2, 3, 4, 1).contiguous()


def diffusion_with_gradient(field: torch.Tensor) -> tuple[float, torch.Tensor]:
    """:func:`llamareg.losses.regularization.diffusion` of a channels-last field and its gradient.

    Written out rather than left to autograd, which on a full-resolution brain spends several times
    longer on the sliced differences and their backward than on the rest of a step. The term is a
    quadratic form, ``value = field . gradient / 2``, so the value costs one dot product more.

    Args:
        field: ``(1, D, H, W, 3)`` displacement in voxels.

    Returns:
        The value and its gradient with respect to ``field`` (same shape).
    """
    gradient = torch.zeros_like(field)
    for dim in (1, 2, 3):
        size = field.shape[dim]
        difference = field.narrow(dim, 1, size - 1) - field.narrow(dim, 0, size - 1)
        # d/du of the mean squared difference along this axis, averaged over the three axes.
        scale = 2.0 / (3 * difference.numel())
        gradient.narrow(dim, 1, size - 1).add_(difference, alpha=scale)
        gradient.narrow(dim, 0, size - 1).sub_(difference, alpha=scale)
    return 0.5 * float(torch.dot(field.reshape(-1), gradient.reshape(-1))), gradient


def _adam(field: torch.Tensor, lr: float) -> torch.optim.Adam:
    """Adam on ``field``, fused where torch has it for the device (ten times faster on the CPU)."""
    try:
        return torch.optim.Adam([field], lr=lr, fused=True)
    except RuntimeError:  # torch < 2.4 fuses Adam on CUDA only
        return torch.optim.Adam([field], lr=lr)


class MovingSampler:
    """The moving image sampled at a level's world points moved by a field, from the moving voxels.

    Args:
        moving: the moving volume's voxels (normalised intensities), on its own grid.
        moving_affine: their voxel-to-world affine.
        level: the grid to sample on.
        device: where to sample.
    """

    def __init__(self, moving: np.ndarray, moving_affine: np.ndarray, level: Grid, device: torch.device | str = "cpu") -> None:
        sigma = antialias_sigma(moving_affine, level)
        if sigma.any():
            moving = ndimage.gaussian_filter(moving.astype(np.float32), sigma)
        self.volume = torch.from_numpy(np.ascontiguousarray(moving, dtype=np.float32))[None, None].to(device)
        to_sample = self._level_to_sample(np.asarray(moving.shape), moving_affine, level)
        self.shape = level.shape
        self.base = self._base(to_sample, level.shape).to(device)
        # A displacement of the field (level voxels) moves the sample point by this (row vectors).
        self.linear = torch.from_numpy(to_sample[:, :3].T.astype(np.float32)).to(device)

    @staticmethod
    def _level_to_sample(moving_shape: np.ndarray, moving_affine: np.ndarray, level: Grid) -> np.ndarray:
        """``(3, 4)``: level voxel index -> grid_sample's coordinates in the moving volume, (x, y, z) = (W, H, D)."""
        level_to_moving = np.linalg.inv(moving_affine) @ level.affine
        # align_corners=True: voxel 0 -> -1 and voxel n-1 -> +1 along each moving axis.
        scale = 2.0 / (moving_shape - 1)
        to_sample = level_to_moving[:3] * scale[:, None]
        to_sample[:, 3] -= 1.0
        return to_sample[::-1].copy()

    @staticmethod
    def _base(to_sample: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
        """Sample coordinates of the level's unmoved voxel centres, ``(D*H*W, 3)`` float32."""
        matrix = torch.from_numpy(to_sample.astype(np.float32))
        axes = [torch.arange(n, dtype=torch.float32) for n in shape]
        base = matrix[:, 3].view(1, 1, 1, 3).expand(*shape, 3).clone()
        for k, axis in enumerate(axes):
            view = [1, 1, 1, 1]
            view[k] = -1
            base += axis.view(view) * matrix[:, k]
        return base.view(-1, 3)

    def __call__(self, field: torch.Tensor) -> torch.Tensor:
        """``(1, 1, D, H, W)``: the moving image at ``p + u(p)`` for the field ``u`` ``(1, D, H, W, 3)``."""
        points = torch.addmm(self.base, field.reshape(-1, 3), self.linear).view(1, *self.shape, 3)
        # Zeros outside: the normalised background, as the model grid's resampling pads.
        return F.grid_sample(self.volume, points, mode="bilinear", padding_mode="zeros", align_corners=True)


def fixed_on_level(fixed: np.ndarray, fixed_grid: Grid, level: Grid, factor: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The fixed image's normalised voxels on a level, ``(1, 1, D, H, W)`` (its own voxels at factor 1)."""
    data = fixed if factor == 1 else resample(fixed, fixed_grid.affine, level, order=1, cval=0.0)
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None, None].to(device)


def optimise_level(
    sampler: MovingSampler, fixed: torch.Tensor, start: torch.Tensor, objective: MultiScaleObjective, steps: int, lr: float
) -> tuple[torch.Tensor, float, float]:
    """Adam on one level's field; returns the field with the lowest loss seen, the start's loss and that loss.

    Args:
        sampler: the moving image on this level.
        fixed: ``(1, 1, D, H, W)`` the fixed image on it.
        start: ``(1, D, H, W, 3)`` the field to start from, in the level's voxels.
        objective: gives the similarity module and lambda.
        steps: Adam steps (0: only score ``start``).
        lr: Adam learning rate, in the level's voxels.
    """
    field = start.detach().clone().requires_grad_(True)
    optimizer = _adam(field, lr)
    best, losses = field.detach().clone(), []
    for step in range(steps + 1):  # the loss of each field, the start's first and the last step's last
        with torch.enable_grad():
            similarity = objective.similarity(sampler(field), fixed)
        smoothness, smoothness_gradient = diffusion_with_gradient(field.detach())
        loss = similarity.item() + objective.reg_weight * smoothness
        if not losses or loss < min(losses):
            best = field.detach().clone()
        losses.append(loss)
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        similarity.backward()
        field.grad.add_(smoothness_gradient, alpha=objective.reg_weight)
        optimizer.step()
    return best, losses[0], min(losses)


def refine_displacement(
    fixed: np.ndarray,
    fixed_grid: Grid,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    flow: np.ndarray,
    flow_grid: Grid,
    objective: MultiScaleObjective,
    steps: int,
    lr: float = DEFAULT_LR,
    max_voxels: int = MAX_REFINE_VOXELS,
    device: torch.device | str = "cpu",
) -> Refinement:
    """Refine ``flow`` coarse to fine up to the fixed image's grid (see the module's description).

    Args:
        fixed: the fixed image's normalised voxels (``fixed_grid.shape``).
        fixed_grid: its grid; the result lives there.
        moving: the moving image's normalised voxels, on its own grid.
        moving_affine: their voxel-to-world affine.
        flow: ``(3, D, H, W)`` starting displacement (the network's) on ``flow_grid``, in its voxels.
        flow_grid: the grid ``flow`` lives on (the model grid); it also bounds the coarsest level.
        objective: e.g. :func:`pair_objective`.
        steps: Adam steps in all (>= 1), split by :func:`split_steps`.
        lr: Adam learning rate, in voxels of each level.
        max_voxels: the finest level's voxel budget.
        device: where to optimise (the images are loaded there level by level).

    Example:
        >>> blob = lambda c: np.exp(-((np.indices((16, 16, 16)).T - c) ** 2).sum(-1).T / 18).astype(np.float32)
        >>> grid = Grid((16, 16, 16), np.eye(4))  # 1 mm voxels; the model grid below has 4 mm ones
        >>> result = refine_displacement(blob(8.0), grid, blob(7.0), np.eye(4), np.zeros((3, 4, 4, 4)),
        ...                              Grid((4, 4, 4), np.diag([4.0, 4, 4, 1])), MultiScaleObjective("mse", 0.0, [1.0]), 12, lr=0.1)
        >>> [(level.shape, level.steps) for level in result.levels], result.displacement.shape
        ([((4, 4, 4), 7), ((8, 8, 8), 3), ((16, 16, 16), 2)], (16, 16, 16, 3))
        >>> all(level.loss_after < level.loss_before for level in result.levels)
        True
    """
    check_options(steps, lr)
    if steps < 1:
        raise ValueError(f"refinement needs at least 1 step, got {steps}")
    started = time.perf_counter()
    factors = pyramid_factors(fixed_grid, coarsest_mm=max(flow_grid.spacing), max_voxels=max_voxels)
    # A level given no steps (fewer steps than levels) is skipped: scoring it would only cost time.
    plan = [(factor, count) for factor, count in zip(factors, split_steps(steps, len(factors))) if count]
    records, field, previous = [], None, None
    with torch.no_grad():
        for factor, level_steps in plan:
            level_started = time.perf_counter()
            level = level_grid(fixed_grid, factor)
            if field is None:
                field = _start_field(flow, flow_grid, level).to(device)
            else:
                field = upsample_field(field, previous // factor, level.shape)
            sampler = MovingSampler(moving, moving_affine, level, device)
            fixed_level = fixed_on_level(fixed, fixed_grid, level, factor, device)
            field, before, after = optimise_level(sampler, fixed_level, field, objective, level_steps, lr)
            del sampler, fixed_level  # free the level's images before the next, finer one is built
            records.append(LevelRecord(level.shape, level.spacing, level_steps, before, after, time.perf_counter() - level_started))
            previous = factor
        field = upsample_field(field, previous, fixed_grid.shape).cpu()
        displacement = (field[0].numpy() @ fixed_grid.affine[:3, :3].T.astype(np.float32)).astype(np.float32)
    return Refinement(displacement, tuple(records), time.perf_counter() - started)


def _start_field(flow: np.ndarray, flow_grid: Grid, level: Grid) -> torch.Tensor:
    """``flow`` (voxels of ``flow_grid``) on ``level``, channels last, in the level's voxels."""
    world = displacement_to_world(flow, flow_grid, level)
    voxels = world @ np.linalg.inv(level.affine[:3, :3]).T
    return torch.from_numpy(np.ascontiguousarray(voxels, dtype=np.float32))[None]
