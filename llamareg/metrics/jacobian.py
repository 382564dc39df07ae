"""Regularity metrics of displacement fields based on the Jacobian determinant."""

from __future__ import annotations

import torch

from llamareg.spatial.functional import jacobian_determinant

# Learn2Reg's SDlogJ clips the determinant to this floor before the log and ignores this border.
LOG_JACOBIAN_FLOOR = 1e-9
LOG_JACOBIAN_BORDER = 2


def _check_mask(mask: torch.Tensor | None, flow: torch.Tensor) -> torch.Tensor:
    """Return the mask as a ``(B, D, H, W)`` boolean tensor (all true when ``mask`` is None)."""
    batch, _, *spatial = flow.shape
    if mask is None:
        return torch.ones((batch, *spatial), dtype=torch.bool, device=flow.device)
    if mask.ndim == 5 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if tuple(mask.shape) != (batch, *spatial):
        raise ValueError(
            f"mask must be (B, D, H, W) or (B, 1, D, H, W) matching flow {tuple(flow.shape)}, got {tuple(mask.shape)}"
        )
    return mask != 0


def folding_percentage(flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Percentage of voxels whose Jacobian determinant is ``<= 0`` (folding), over the whole volume.

    Args:
        flow: ``(B, 3, D, H, W)`` displacement in voxels.
        mask: optional ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` region to count in (non-zero = inside).

    Returns:
        ``(B,)`` percentages in ``[0, 100]`` (NaN for an empty mask).

    Example:
        >>> folding_percentage(torch.zeros(2, 3, 4, 4, 4)).tolist()
        [0.0, 0.0]
    """
    determinant = jacobian_determinant(flow)
    mask = _check_mask(mask, flow)
    folded = ((determinant <= 0) & mask).flatten(1).sum(dim=1)
    return 100.0 * folded.double() / mask.flatten(1).sum(dim=1).double()


def sd_log_jacobian(flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Standard deviation of the log Jacobian determinant (SDlogJ), as Learn2Reg reports it.

    The determinant is clipped to ``[1e-9, 1e9]`` before the log (folded voxels count as very strong
    compression rather than NaN), a 2-voxel border is ignored (where the finite differences are
    one-sided) and the population standard deviation (``ddof=0``, like numpy) is taken.

    Args:
        flow: ``(B, 3, D, H, W)`` displacement in voxels; every spatial size must exceed 4.
        mask: optional ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` region (non-zero = inside), cropped likewise.

    Returns:
        ``(B,)`` float64 standard deviations (NaN for an empty mask).

    Example:
        >>> sd_log_jacobian(torch.zeros(1, 3, 6, 6, 6)).tolist()
        [0.0]
    """
    border = LOG_JACOBIAN_BORDER
    if flow.ndim == 5 and min(flow.shape[2:]) <= 2 * border:
        raise ValueError(f"flow spatial sizes must all exceed {2 * border}, got {tuple(flow.shape[2:])}")
    determinant = jacobian_determinant(flow)
    mask = _check_mask(mask, flow)
    interior = (slice(None), slice(border, -border), slice(border, -border), slice(border, -border))
    log_determinant = determinant[interior].double().clamp(LOG_JACOBIAN_FLOOR, 1 / LOG_JACOBIAN_FLOOR).log()
    mask = mask[interior]
    deviations = [
        values[inside].std(correction=0) if inside.any() else values.new_tensor(float("nan"))
        for values, inside in zip(log_determinant, mask)
    ]
    return torch.stack(deviations)
