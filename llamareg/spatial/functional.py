"""Pure functions on dense displacement fields (voxelmorph 0.3 style functional core).

Conventions used throughout llamareg:
    * Volumes are ``(B, C, D, H, W)``.
    * A displacement field ("flow") is ``(B, 3, D, H, W)`` in voxel units of its own grid; channel ``k``
      displaces spatial axis ``k`` (0 -> D, 1 -> H, 2 -> W).
    * The transform is ``x -> x + u(x)`` and warping samples the moving image there:
      ``warped(x) = moving(x + u(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from llamareg.checks import check_shape, look_up_option

WARP_MODES = ("bilinear", "nearest")
PADDING_MODES = ("zeros", "border", "reflection")
RESIZE_MODES = ("trilinear", "nearest")


def _check_flow(flow: torch.Tensor, name: str = "flow") -> None:
    if flow.ndim != 5 or flow.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, D, H, W), got {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got {flow.dtype}")


def identity_grid(shape: Sequence[int], device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Voxel coordinates of a grid, channel ``k`` holding the index along spatial axis ``k``.

    Args:
        shape: spatial shape ``(D, H, W)``.
        device: device of the result.
        dtype: floating dtype of the result (default: torch's default dtype).

    Returns:
        Tensor ``(1, 3, D, H, W)``.

    Example:
        >>> identity_grid((2, 3, 4))[0, :, 1, 2, 3].tolist()
        [1.0, 2.0, 3.0]
    """
    shape = check_shape(shape, "shape")
    axes = [torch.arange(n, device=device, dtype=dtype or torch.get_default_dtype()) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).unsqueeze(0)


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border") -> torch.Tensor:
    """Resample ``image`` at ``x + flow(x)``: ``warped(x) = image(x + flow(x))``.

    Voxel indices map to ``grid_sample`` coordinates with ``align_corners=True``, so an integer
    displacement samples voxel centres exactly.

    Args:
        image: ``(B, C, D, H, W)``; integer label maps are allowed with ``mode="nearest"`` and come back
            in their own dtype.
        flow: ``(B, 3, D, H, W)`` displacement in voxels, same spatial shape as ``image``.
        mode: ``"bilinear"`` (trilinear for volumes) or ``"nearest"`` (for labels).
        padding_mode: ``"border"``, ``"zeros"`` or ``"reflection"`` for samples outside the volume.

    Returns:
        The warped image, same shape and dtype as ``image``.

    Example:
        >>> image = torch.arange(5.0).view(1, 1, 1, 1, 5)
        >>> flow = torch.zeros(1, 3, 1, 1, 5); flow[:, 2] = 1.0
        >>> warp(image, flow)[0, 0, 0, 0].tolist()
        [1.0, 2.0, 3.0, 4.0, 4.0]
    """
    _check_flow(flow)
    if image.ndim != 5:
        raise ValueError(f"image must have shape (B, C, D, H, W), got {tuple(image.shape)}")
    if image.shape[0] != flow.shape[0] or image.shape[2:] != flow.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and flow {tuple(flow.shape)} must share batch size and spatial shape")
    look_up_option(mode, WARP_MODES, "mode")
    look_up_option(padding_mode, PADDING_MODES, "padding_mode")
    if not image.is_floating_point() and mode != "nearest":
        raise ValueError(f"integer image (dtype {image.dtype}) must be warped with mode='nearest'")

    # At least float32: half precision cannot hold voxel coordinates such as 200.3 (e.g. flows under autocast).
    work_dtype = torch.promote_types(flow.dtype, torch.float32)
    if image.is_floating_point():
        work_dtype = torch.promote_types(work_dtype, image.dtype)
    coords = identity_grid(flow.shape[2:], device=flow.device, dtype=work_dtype) + flow.to(work_dtype)
    # align_corners=True: index 0 -> -1 and index n-1 -> +1 (a size-1 axis maps everything to its only voxel).
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in flow.shape[2:]], device=flow.device, dtype=work_dtype)
    normalised = coords * scale.view(1, 3, 1, 1, 1) - 1.0
    # grid_sample wants (B, D, H, W, 3) with the last axis ordered (x, y, z) = (W, H, D).
    grid = normalised.permute(0, 2, 3, 4, 1).flip(-1)
    warped = F.grid_sample(image.to(work_dtype), grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    if not image.is_floating_point():
        warped = warped.round()
    return warped.to(image.dtype)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Displacement of ``(id + outer) o (id + inner)``: ``u = inner + warp(outer, inner)``.

    Applying the result equals applying ``inner`` first, then ``outer``:
    ``warp(image, compose(outer, inner)) ~= warp(warp(image, outer), inner)``.

    Args:
        outer: ``(B, 3, D, H, W)`` displacement applied second.
        inner: ``(B, 3, D, H, W)`` displacement applied first.

    Returns:
        ``(B, 3, D, H, W)`` composed displacement.

    Example:
        >>> a = torch.full((1, 3, 4, 4, 4), 1.0); b = torch.full((1, 3, 4, 4, 4), 0.5)
        >>> compose(a, b)[0, :, 0, 0, 0].tolist()
        [1.5, 1.5, 1.5]
    """
    _check_flow(outer, "outer")
    _check_flow(inner, "inner")
    return inner + warp(outer, inner)


def integrate_velocity(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Integrate a stationary velocity field by scaling and squaring (diffeomorphic displacement).

    The velocity is divided by ``2**steps`` and the resulting small displacement composed with
    itself ``steps`` times.

    Args:
        velocity: ``(B, 3, D, H, W)`` stationary velocity in voxels.
        steps: number of squarings; ``0`` returns ``velocity`` unchanged.

    Returns:
        ``(B, 3, D, H, W)`` displacement of the time-1 flow.

    Example:
        >>> v = torch.full((1, 3, 4, 4, 4), 2.0)
        >>> integrate_velocity(v, steps=3)[0, :, 1, 1, 1].tolist()
        [2.0, 2.0, 2.0]
    """
    _check_flow(velocity, "velocity")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    displacement = velocity / (2**steps)
    for _ in range(steps):
        displacement = compose(displacement, displacement)
    return displacement


def resize_flow(flow: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample a displacement field to a new grid and rescale it to the new voxel units.

    Trilinear interpolation with ``align_corners=False`` (voxel centres of a factor-2 pyramid line up),
    then component ``k`` is multiplied by ``size[k] / old_size[k]``: a 1-voxel shift at size ``n`` is a
    2-voxel shift at size ``2n``.

    Args:
        flow: ``(B, 3, D, H, W)`` displacement in voxels of its grid.
        size: target spatial size ``(D', H', W')``.

    Returns:
        ``(B, 3, D', H', W')`` displacement in voxels of the new grid.

    Example:
        >>> resize_flow(torch.ones(1, 3, 4, 4, 4), (8, 8, 2))[0, :, 0, 0, 0].tolist()
        [2.0, 2.0, 0.5]
    """
    _check_flow(flow)
    size = check_shape(size, "size")
    factors = [new / old for new, old in zip(size, flow.shape[2:])]
    resized = F.interpolate(flow, size=size, mode="trilinear", align_corners=False)
    return resized * torch.tensor(factors, device=flow.device, dtype=flow.dtype).view(1, 3, 1, 1, 1)


def resize_image(image: torch.Tensor, size: Sequence[int], mode: str = "trilinear") -> torch.Tensor:
    """Resample an image (or label map) to ``size`` with the same voxel-centre geometry as ``resize_flow``.

    ``"trilinear"`` uses ``align_corners=False`` (halving the size averages 2x2x2 blocks); ``"nearest"``
    uses torch's ``"nearest-exact"``, which follows the same voxel-centre mapping, and keeps integer
    label maps in their dtype.

    Args:
        image: ``(B, C, D, H, W)``.
        size: target spatial size ``(D', H', W')``.
        mode: ``"trilinear"`` for intensities or ``"nearest"`` for labels.

    Returns:
        ``(B, C, D', H', W')`` in the dtype of ``image``.

    Example:
        >>> resize_image(torch.arange(4.0).view(1, 1, 1, 1, 4), (1, 1, 2))[0, 0, 0, 0].tolist()
        [0.5, 2.5]
    """
    if image.ndim != 5:
        raise ValueError(f"image must have shape (B, C, D, H, W), got {tuple(image.shape)}")
    look_up_option(mode, RESIZE_MODES, "mode")
    size = check_shape(size, "size")
    if mode == "nearest":
        source = image if image.is_floating_point() else image.float()
        return F.interpolate(source, size=size, mode="nearest-exact").to(image.dtype)
    if not image.is_floating_point():
        raise ValueError(f"integer image (dtype {image.dtype}) must be resized with mode='nearest'")
    return F.interpolate(image, size=size, mode="trilinear", align_corners=False)


def jacobian_determinant(flow: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian ``I + grad u`` of ``x -> x + u(x)`` at every voxel.

    Derivatives are central differences in the interior and one-sided at the border
    (``torch.gradient``, voxel spacing 1). Differentiable, so it can also serve in a loss.

    Args:
        flow: ``(B, 3, D, H, W)`` displacement in voxels; every spatial size must be at least 2.

    Returns:
        ``(B, D, H, W)`` determinants (``<= 0`` means folding), float32 or float64.

    Example:
        >>> jacobian_determinant(torch.zeros(1, 3, 3, 3, 3)).unique().tolist()
        [1.0]
    """
    _check_flow(flow)
    if min(flow.shape[2:]) < 2:
        raise ValueError(f"flow spatial sizes must all be >= 2 for finite differences, got {tuple(flow.shape[2:])}")
    # derivatives[j][:, i] = d u_i / d x_j; stacking on the last axis gives J[..., i, j].
    # float32 at least: determinants are not implemented for half precision.
    flow = flow.to(torch.promote_types(flow.dtype, torch.float32))
    derivatives = torch.gradient(flow, dim=(2, 3, 4))
    gradient = torch.stack(derivatives, dim=-1).permute(0, 2, 3, 4, 1, 5)
    jacobian = gradient + torch.eye(3, device=flow.device, dtype=flow.dtype)
    return torch.linalg.det(jacobian)
