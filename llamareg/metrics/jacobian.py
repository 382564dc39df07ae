"""Regularity metrics of displacement fields based on the Jacobian determinant."""

from __future__ import annotations

import torch

from llamareg.spatial.functional import jacobian_determinant

# Learn2Reg's SDlogJ shifts the determinant by 3, clips it to [floor, 1 / floor] before the log and
# ignores this border.
LOG_JACOBIAN_SHIFT = 3.0
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
        raise ValueError(f"mask must be (B, D, H, W) or (B, 1, D, H, W) matching flow {tuple(flow.shape)}, got {tuple(mask.shape)}")
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


def sdlogj_l2r(flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Learn2Reg's SDlogJ: the standard deviation of ``log(clip(det J + 3, 1e-9, 1e9))``.

    As the challenge's evaluation computes it (MDL-UzL/L2R, ``evaluation/evaluation.py`` and
    ``evaluation/utils.py``, ``jacobian_determinant``): central differences, a 2-voxel border left
    out, the determinant shifted by +3 before the clip and the log, and the population standard
    deviation (``ddof=0``, numpy's). The +3 matters: on one smooth field the unshifted
    ``std(log(det J))`` is 0.114 where this is 0.028, so only this one compares with published tables.

    Args:
        flow: ``(B, 3, D, H, W)`` displacement in voxels; every spatial size must exceed 4.
        mask: optional ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` region (non-zero = inside), cropped likewise.

    Returns:
        ``(B,)`` float64 standard deviations (NaN for an empty mask).

    Example:
        >>> sdlogj_l2r(torch.zeros(1, 3, 6, 6, 6)).tolist()
        [0.0]
    """
    border = LOG_JACOBIAN_BORDER
    if flow.ndim == 5 and min(flow.shape[2:]) <= 2 * border:
        raise ValueError(f"flow spatial sizes must all exceed {2 * border}, got {tuple(flow.shape[2:])}")
    determinant = jacobian_determinant(flow)
    mask = _check_mask(mask, flow)
    interior = (slice(None), slice(border, -border), slice(border, -border), slice(border, -border))
    shifted = (determinant[interior].double() + LOG_JACOBIAN_SHIFT).clamp(LOG_JACOBIAN_FLOOR, 1 / LOG_JACOBIAN_FLOOR)
    mask = mask[interior]
    deviations = [
        values[inside].std(correction=0) if inside.any() else values.new_tensor(float("nan")) for values, inside in zip(shifted.log(), mask)
    ]
    return torch.stack(deviations)


def _tetrahedron_determinants(flow: torch.Tensor) -> list[torch.Tensor]:
    """The ten finite-difference Jacobian determinants of Liu et al.'s digital diffeomorphism criteria
    at every voxel: the eight one-sided ones (forward or backward along each axis) and the two of the
    tetrahedra J1* and J2*, on the map ``x + u(x)`` with the displacement extended by one voxel (edge
    values) around the volume."""
    flow = flow.to(torch.promote_types(flow.dtype, torch.float32))
    padded = torch.nn.functional.pad(flow, (1, 1, 1, 1, 1, 1), mode="replicate")
    spatial = padded.shape[2:]
    axes = [torch.arange(size, dtype=flow.dtype, device=flow.device) - 1 for size in spatial]
    position = torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]
    phi = padded + position  # (B, 3, D+2, H+2, W+2), the map in voxel coordinates

    def at(dx: int, dy: int, dz: int) -> torch.Tensor:
        """phi at the neighbour (dx, dy, dz) of every voxel of the original grid."""
        d, h, w = flow.shape[2:]
        return phi[:, :, 1 + dx : 1 + dx + d, 1 + dy : 1 + dy + h, 1 + dz : 1 + dz + w]

    def determinant(columns: list[torch.Tensor]) -> torch.Tensor:
        return torch.linalg.det(torch.stack(columns, dim=-1).permute(0, 2, 3, 4, 1, 5))

    centre = at(0, 0, 0)
    steps = []
    for signs in ((1, 1, 1), (1, 1, -1), (1, -1, 1), (1, -1, -1), (-1, 1, 1), (-1, 1, -1), (-1, -1, 1), (-1, -1, -1)):
        # forward: phi(x + e) - phi(x); backward: phi(x) - phi(x - e)
        columns = []
        for axis, sign in enumerate(signs):
            offset = [0, 0, 0]
            offset[axis] = sign
            neighbour = at(*offset)
            columns.append(neighbour - centre if sign > 0 else centre - neighbour)
        steps.append(determinant(columns))
    j1 = determinant([at(-1, -1, 0) - centre, at(-1, 0, -1) - centre, at(0, -1, -1) - centre])
    j2 = determinant([at(1, 1, 0) - centre, at(0, 1, 1) - centre, at(1, 0, 1) - centre])
    return [*steps, j1, j2]


def non_diffeomorphic_volume(flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """LUMIR's NDV: the non-diffeomorphic volume, as a percentage of the (masked) volume.

    Liu et al., "On finite difference Jacobian computation in deformable image registration" (IJCV
    2024; github.com/yihao6/digital_diffeomorphism, ``non_diffeomorphic_measures.py``): each voxel adds
    ``sum over the ten determinants of -0.5 * min(det, 0) / 6``, the volume of the tetrahedra of its
    cell that the map turns inside out. 0 for a digitally diffeomorphic map; a reflection scores 100.

    Args:
        flow: ``(B, 3, D, H, W)`` displacement in voxels.
        mask: optional ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` region (non-zero = inside).

    Returns:
        ``(B,)`` float64 percentages (NaN for an empty mask).

    Example:
        >>> non_diffeomorphic_volume(torch.zeros(1, 3, 4, 4, 4)).tolist()
        [0.0]
    """
    mask = _check_mask(mask, flow)
    volume = sum(-0.5 * determinant.clamp(max=0) / 6 for determinant in _tetrahedron_determinants(flow))
    inside = mask.flatten(1).sum(dim=1).double()
    return 100.0 * (volume.double() * mask).flatten(1).sum(dim=1) / inside
