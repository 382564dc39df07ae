"""Register one pair of volumes of any orientation and size with a trained model.

Both images are normalised to [0, 1] (:func:`~llamareg.inference.images.normalise_intensities`) and
resampled onto the model grid (the fixed image's world box at the training shape, RAS axes); the
network's displacement is mapped back to the fixed image's voxel grid in world millimetres, and the
moving image (in its own intensities) and labels are resampled through it from their own files'
voxels, so outputs are interpolated once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from llamareg.inference.grid import Grid, displacement_to_world, model_grid, resample, sample_world
from llamareg.inference.images import NiftiVolume, normalise_intensities
from llamareg.inference.model_io import TrainedModel
from llamareg.inference.refine import DEFAULT_LR, Refinement, pair_objective, refine_flow


@dataclass
class Registration:
    """One registered pair.

    Attributes:
        displacement: ``(X, Y, Z, 3)`` float32 on the fixed image's voxel grid, world (RAS) mm:
            the fixed image's point ``p`` corresponds to the moving image's point ``p + d(p)``.
        warped: the moving image resampled onto the fixed grid through the displacement (float32).
        warped_labels: the moving labels likewise (nearest neighbour, int64), or None.
        grid: the model grid.
        grid_images: ``(moving, fixed)`` as the network saw them, ``(1, 1, D, H, W)`` in [0, 1].
        grid_flow: ``(1, 3, D, H, W)`` final displacement on the model grid, in its voxels.
        seconds: wall time from the loaded voxels to the outputs (resampling, network, refinement).
        refinement: the instance optimisation's record, or None without ``refine_steps``.
    """

    displacement: np.ndarray
    warped: np.ndarray
    warped_labels: np.ndarray | None
    grid: Grid
    grid_images: tuple[torch.Tensor, torch.Tensor]
    grid_flow: torch.Tensor
    seconds: float
    refinement: Refinement | None


def grid_of(volume: NiftiVolume) -> Grid:
    """The voxel grid of a volume."""
    return Grid(volume.shape, volume.affine)


def warp_to_fixed(volume: NiftiVolume, fixed_grid: Grid, displacement: np.ndarray | None, labels: bool) -> np.ndarray:
    """Resample ``volume`` at the fixed grid's points moved by ``displacement`` (None: not moved).

    Intensities are interpolated linearly and take the volume's minimum outside it; labels take the
    nearest voxel and background (0) outside.
    """
    points = fixed_grid.world_points()
    if displacement is not None:
        points = points + displacement
    if labels:
        return sample_world(volume.data, volume.affine, points, order=0, cval=0).astype(np.int64)
    return sample_world(volume.data, volume.affine, points, order=1, cval=float(volume.data.min())).astype(np.float32)


def register_pair(
    trained: TrainedModel,
    fixed: NiftiVolume,
    moving: NiftiVolume,
    moving_labels: NiftiVolume | None = None,
    refine_steps: int = 0,
    refine_lr: float = DEFAULT_LR,
) -> Registration:
    """Register ``moving`` to ``fixed``.

    Args:
        trained: the loaded model.
        fixed: the image whose space the outputs take.
        moving: the image to warp (roughly aligned with ``fixed`` in world coordinates).
        moving_labels: labels on ``moving``'s grid to warp as well.
        refine_steps: Adam steps of instance optimisation after the network (0: none).
        refine_lr: their learning rate (voxels).
    """
    started = time.perf_counter()
    fixed_grid = grid_of(fixed)
    grid = model_grid(fixed_grid, trained.shape)

    def on_grid(volume: NiftiVolume) -> torch.Tensor:
        data = resample(normalise_intensities(volume.data), volume.affine, grid, order=1, cval=0.0)
        return torch.from_numpy(data.astype(np.float32))[None, None].to(trained.device)

    moving_grid, fixed_on_grid = on_grid(moving), on_grid(fixed)
    with torch.no_grad(), trained.precision.autocast():
        outputs = trained.model(moving_grid, fixed_on_grid)
        flow = outputs.get("full_flow", outputs["flows"][-1]).float()  # baselines name their full-resolution field
    refinement = None
    if refine_steps:
        refinement = refine_flow(moving_grid, fixed_on_grid, flow, pair_objective(trained.config), refine_steps, refine_lr)
        flow = refinement.flow
    displacement = displacement_to_world(flow[0].cpu().numpy(), grid, fixed_grid)
    warped = warp_to_fixed(moving, fixed_grid, displacement, labels=False)
    warped_labels = None if moving_labels is None else warp_to_fixed(moving_labels, fixed_grid, displacement, labels=True)
    return Registration(
        displacement=displacement,
        warped=warped,
        warped_labels=warped_labels,
        grid=grid,
        grid_images=(moving_grid, fixed_on_grid),
        grid_flow=flow,
        seconds=time.perf_counter() - started,
        refinement=refinement,
    )
