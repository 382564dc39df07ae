"""Instance optimisation: refine the network's displacement on one pair by gradient descent.

The full-resolution field is optimised directly with Adam on the full-resolution term of the
training objective, similarity(moving warped, fixed) + lambda * diffusion(field), with the
similarity and lambda the checkpoint was trained with. The field with the lowest loss seen is
returned, so refinement never makes the pair's loss worse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llamareg.config import Config
from llamareg.training.objective import MultiScaleObjective

DEFAULT_LR = 0.05  # voxels per Adam step


@dataclass(frozen=True)
class Refinement:
    """The refined field and the pair's loss before and after.

    Attributes:
        flow: ``(1, 3, D, H, W)`` refined displacement in model-grid voxels.
        steps: Adam steps taken.
        loss_before: loss of the network's field.
        loss_after: loss of ``flow``.
    """

    flow: torch.Tensor
    steps: int
    loss_before: float
    loss_after: float


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


def refine_flow(
    moving: torch.Tensor, fixed: torch.Tensor, flow: torch.Tensor, objective: MultiScaleObjective, steps: int, lr: float = DEFAULT_LR
) -> Refinement:
    """Run ``steps`` Adam steps on ``flow`` minimising ``objective`` for this pair.

    Args:
        moving: ``(1, 1, D, H, W)`` moving image on the model grid, in [0, 1].
        fixed: ``(1, 1, D, H, W)`` fixed image on the model grid.
        flow: ``(1, 3, D, H, W)`` starting displacement (the network's), model-grid voxels.
        objective: e.g. :func:`pair_objective`.
        steps: number of Adam steps (>= 1).
        lr: Adam learning rate, in voxels.

    Example:
        >>> moving = torch.zeros(1, 1, 8, 8, 8); moving[..., 3:6, 3:6, 3:6] = 1
        >>> fixed = moving.roll(1, dims=2)
        >>> result = refine_flow(moving, fixed, torch.zeros(1, 3, 8, 8, 8), MultiScaleObjective("mse", 0.0, [1.0]), 10, lr=0.1)
        >>> result.loss_after < result.loss_before
        True
    """
    check_options(steps, lr)
    if steps < 1:
        raise ValueError(f"refine_flow needs at least 1 step, got {steps}")
    field = flow.detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([field], lr=lr)
    losses, best_field = [], field.detach().clone()
    with torch.enable_grad():
        for step in range(steps + 1):  # the loss of each field, the network's first and the last step's last
            loss, _ = objective(moving, fixed, [field])
            if not losses or loss.item() < min(losses):
                best_field = field.detach().clone()
            losses.append(loss.item())
            if step == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return Refinement(best_field, steps, losses[0], min(losses))
