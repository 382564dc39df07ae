"""Register one pair of volumes of any orientation and size with a trained model.

Both images are normalised to [0, 1] (:func:`~llamareg.inference.images.normalise_intensities`) and
resampled onto the model grid (:func:`model_grid_for`: the training voxel size, RAS axes, the fixed
image's world box rounded to the nearest multiples of 16 voxels); the network's displacement is mapped back to
the fixed image's voxel grid in world millimetres (or refined there, coarse to fine, with
``refine_steps``), and the moving image (in its own intensities) and labels are resampled through it
from their own files' voxels, so outputs are interpolated once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from llamareg.checks import check_shape, look_up_option
from llamareg.inference.affine import AffineResult, estimate_affine
from llamareg.inference.grid import (
    MODEL_MULTIPLE,
    Grid,
    check_spacing,
    displacement_to_world,
    model_grid,
    resample,
)
from llamareg.inference.images import NiftiVolume, normalise_intensities
from llamareg.inference.model_io import TrainedModel
from llamareg.inference.refine import DEFAULT_LR, Refinement, pair_objective, refine_displacement
from llamareg.inference.transforms import warp_volume


PREALIGNMENTS = ("affine", "rigid")


@dataclass
class Registration:
    """One registered pair.

    Attributes:
        displacement: ``(X, Y, Z, 3)`` float32 on the fixed image's voxel grid, world (RAS) mm:
            the fixed image's point ``p`` corresponds to the moving image's point ``p + d(p)``.
        warped: the moving image resampled onto the fixed grid through the displacement (float32).
        warped_labels: the moving labels likewise (nearest neighbour, int64), or None.
        grid: the model grid.
        grid_flow: ``(1, 3, D, H, W)`` the network's displacement on the model grid, in its voxels
            (before any refinement).
        seconds: wall time from the loaded voxels to the outputs (resampling, network, refinement).
        network_seconds: of which the network call(s) on the model grid.
        precision: the precision the network ran in (``fp32``, ``bf16``, ``fp16``).
        refinement: the instance optimisation's record, or None without ``refine_steps``.
        symmetric: whether the network ran both ways (see :func:`symmetric_flow`).
        prealignment: the affine or rigid pre-alignment (already composed into ``displacement``), or None.
    """

    displacement: np.ndarray
    warped: np.ndarray
    warped_labels: np.ndarray | None
    grid: Grid
    grid_flow: torch.Tensor
    seconds: float
    refinement: Refinement | None
    symmetric: bool = False
    network_seconds: float = 0.0
    precision: str = "fp32"
    prealignment: AffineResult | None = None


def grid_of(volume: NiftiVolume) -> Grid:
    """The voxel grid of a volume."""
    return Grid(volume.shape, volume.affine)


def warp_to_fixed(volume: NiftiVolume, fixed_grid: Grid, displacement: np.ndarray | None, labels: bool) -> np.ndarray:
    """Resample ``volume`` at the fixed grid's points moved by ``displacement`` (None: not moved), with
    :func:`~llamareg.inference.transforms.warp_volume` (linear for intensities, nearest for labels)."""
    points = fixed_grid.world_points()
    if displacement is not None:
        points = points + displacement
    return warp_volume(volume, points, labels)


def input_multiple(model: torch.nn.Module) -> int:
    """What every model-grid side must be a multiple of: 16 (LLaMA-Reg's token stride), or a
    baseline's coarser stride (e.g. 32 for TransMorph's published four stages)."""
    return math.lcm(MODEL_MULTIPLE, int(getattr(model, "stride", MODEL_MULTIPLE)))


def model_grid_for(trained: TrainedModel, fixed_grid: Grid, spacing: float | None = None, shape: Sequence[int] | None = None) -> Grid:
    """The grid the network sees for a fixed image: isotropic voxels of the training spacing
    (``config.data.spacing_mm``) or ``spacing``, RAS axes, over the fixed image's world box rounded to
    the nearest multiple of :func:`input_multiple` voxels per side, or cropped/padded to ``shape``, about its centre.

    Every network here (LLaMA-Reg, whose positional embedding is resampled to the token grid, and the
    baselines) takes any input whose sides are multiples of its stride, so the training *shape* is
    not needed, only its voxel size.

    Raises:
        ValueError: naming ``--spacing`` or ``--shape`` when one is not usable with this model.
    """
    multiple = input_multiple(trained.model)
    if shape is not None:
        shape = check_shape(shape, "--shape", multiple=MODEL_MULTIPLE)
        if any(side % multiple for side in shape):
            raise ValueError(
                f"--shape must be three multiples of {multiple} for this {trained.config.model.architecture} "
                f"model (its stride), got {shape}"
            )
    spacing = trained.config.data.spacing_mm if spacing is None else check_spacing(spacing)
    return model_grid(fixed_grid, spacing, shape, multiple)


def network_flow_of(trained: TrainedModel, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """The network's full-resolution displacement ``(B, 3, D, H, W)`` for ``B`` pairs on the model grid,
    in inference mode (no autograd state) and the model's precision."""
    with torch.inference_mode(), trained.precision.autocast():
        outputs = trained.model(moving, fixed)
        return outputs.get("full_flow", outputs["flows"][-1]).float()  # baselines name their full-resolution field


def symmetric_flow(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """``(forward - backward) / 2``: the moving-to-fixed field estimated from both directions.

    ``backward`` (fixed registered to moving) is, to first order in the displacement, the negative of
    ``forward``; averaging the two cancels any bias the network has for one argument order, and for
    two identical images it is exactly zero.

    Example:
        >>> bias = torch.full((1, 3, 2, 2, 2), 0.4)
        >>> symmetric_flow(bias, bias).abs().max().item()
        0.0
    """
    return (forward - backward) / 2


def register_pair(
    trained: TrainedModel,
    fixed: NiftiVolume,
    moving: NiftiVolume,
    moving_labels: NiftiVolume | None = None,
    refine_steps: int = 0,
    refine_lr: float = DEFAULT_LR,
    spacing: float | None = None,
    shape: Sequence[int] | None = None,
    symmetric: bool = True,
    prealign: str | None = None,
) -> Registration:
    """Register ``moving`` to ``fixed``.

    Args:
        trained: the loaded model.
        fixed: the image whose space the outputs take.
        moving: the image to warp (roughly aligned with ``fixed`` in world coordinates).
        moving_labels: labels on ``moving``'s grid to warp as well.
        refine_steps: Adam steps of instance optimisation after the network, coarse to fine up to the
            fixed image's own grid (0: none; :func:`~llamareg.inference.refine.refine_displacement`).
        refine_lr: their learning rate (voxels of each level).
        spacing: the model grid's voxel size in mm (default: the training spacing).
        shape: the model grid's shape (default: the fixed image's box, rounded to multiples of 16); see :func:`model_grid_for`.
        symmetric: run the network both ways (one batch of two) and take :func:`symmetric_flow` of the
            two fields, so that an image registered to itself gets zero displacement.
        prealign: ``"affine"`` or ``"rigid"`` to align the images first
            (:func:`~llamareg.inference.affine.estimate_affine` under the model's similarity); the deformable
            step then starts from that alignment and the returned displacement is the composition
            ``T(p + u(p)) - p``, one field from fixed points to moving points.

    Raises:
        ValueError: for a ``prealign`` not in :data:`PREALIGNMENTS`.
    """
    if prealign is not None:
        look_up_option(prealign, PREALIGNMENTS, "prealign")
    started = time.perf_counter()
    prealignment = None
    original_moving = moving
    if prealign is not None:
        prealignment = estimate_affine(fixed, moving, trained.config.train.similarity, rigid=prealign == "rigid")
        # The aligned moving image is the same voxels under another header: nothing is resampled twice.
        moving = replace(moving, affine=prealignment.transform.aligned_affine(moving.affine))
    fixed_grid = grid_of(fixed)
    grid = model_grid_for(trained, fixed_grid, spacing, shape)
    fixed_data, moving_data = normalise_intensities(fixed.data), normalise_intensities(moving.data)

    def on_grid(data: np.ndarray, affine: np.ndarray) -> torch.Tensor:
        resampled = resample(data, affine, grid, order=1, cval=0.0)
        return torch.from_numpy(resampled.astype(np.float32))[None, None].to(trained.device)

    moving_on_grid, fixed_on_grid = on_grid(moving_data, moving.affine), on_grid(fixed_data, fixed.affine)
    network_started = time.perf_counter()
    if symmetric:  # both directions as one batch of two: a third less time than two calls on a CPU
        both = network_flow_of(trained, torch.cat([moving_on_grid, fixed_on_grid]), torch.cat([fixed_on_grid, moving_on_grid]))
        flow = symmetric_flow(both[:1], both[1:])
    else:
        flow = network_flow_of(trained, moving_on_grid, fixed_on_grid)
    network_flow = flow[0].cpu().numpy()
    network_seconds = time.perf_counter() - network_started
    refinement = None
    if refine_steps:
        refinement = refine_displacement(
            fixed_data,
            fixed_grid,
            moving_data,
            moving.affine,
            network_flow,
            grid,
            pair_objective(trained.config),
            refine_steps,
            refine_lr,
            device=trained.device,
        )
        displacement = refinement.displacement
    else:
        displacement = displacement_to_world(network_flow, grid, fixed_grid)
    if prealignment is not None:
        points = fixed_grid.world_points()
        displacement = (prealignment.transform.apply(points + displacement) - points).astype(np.float32)
    # From the original files through the one written field, as `llamareg warp` does: its outputs are these.
    warped = warp_to_fixed(original_moving, fixed_grid, displacement, labels=False)
    warped_labels = None if moving_labels is None else warp_to_fixed(moving_labels, fixed_grid, displacement, labels=True)
    return Registration(
        displacement=displacement,
        warped=warped,
        warped_labels=warped_labels,
        grid=grid,
        grid_flow=flow,
        seconds=time.perf_counter() - started,
        refinement=refinement,
        symmetric=symmetric,
        network_seconds=network_seconds,
        precision=trained.precision.name,
        prealignment=prealignment,
    )
