"""Image similarity losses (lower is better) between a warped moving image and the fixed image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIMILARITY_NAMES = ("mse", "ncc")


def _check_pair(warped: torch.Tensor, fixed: torch.Tensor) -> None:
    if warped.shape != fixed.shape:
        raise ValueError(f"warped {tuple(warped.shape)} and fixed {tuple(fixed.shape)} must have the same shape")


def mse(warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Mean squared intensity difference.

    Example:
        >>> mse(torch.zeros(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2)).item()
        1.0
    """
    _check_pair(warped, fixed)
    return torch.mean((warped - fixed) ** 2)


def _box_sum(volumes: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a ``window**3`` box centred on each voxel (zeros outside), as three 1D passes.

    Each pass is a running sum (cumsum) differenced ``window`` apart: O(voxels) whatever the window,
    and several times faster on the CPU than a box convolution, which PyTorch runs on its slow
    reference kernel for so few channels.
    """
    half = window // 2
    result = volumes
    for dim in (2, 3, 4):
        size = result.shape[dim]
        padding = [0, 0] * (4 - dim) + [half + 1, half]
        running = F.pad(result, padding).cumsum(dim)
        result = running.narrow(dim, window, size) - running.narrow(dim, 0, size)
    return result


def local_ncc(warped: torch.Tensor, fixed: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Negative mean squared local normalised cross-correlation (voxelmorph's NCC loss).

    For every voxel and channel the correlation ``cov^2 / (var_w * var_f + eps)`` is computed over a
    ``window**3`` box, with covariance and variances as ``n``-scaled sums like voxelmorph (so ``eps`` only
    matters in flat regions). Unlike voxelmorph's zero padding, boxes are clipped at the volume border
    (statistics over in-volume voxels only), which keeps the value invariant to affine intensity changes
    everywhere. Computed in float32 even under autocast, because the sums of squares lose too much
    precision in half precision.

    Args:
        warped: ``(B, C, D, H, W)`` warped moving image.
        fixed: ``(B, C, D, H, W)`` fixed image.
        window: odd box side in voxels.
        eps: stabiliser added to the denominator.

    Returns:
        Scalar in ``[-1, 0]``: ``-1`` for images related by a positive or negative affine intensity map.

    Example:
        >>> image = torch.rand(1, 1, 8, 8, 8)
        >>> round(local_ncc(image, 2 * image + 1, window=3).item(), 4)
        -1.0
    """
    _check_pair(warped, fixed)
    if warped.ndim != 5:
        raise ValueError(f"images must have shape (B, C, D, H, W), got {tuple(warped.shape)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window!r}")
    with torch.autocast(device_type=warped.device.type, enabled=False):
        w = warped.float()
        f = fixed.float()
        batch, channels = w.shape[:2]
        # One single-channel volume per (batch, channel); the five statistics go on the channel axis.
        stats = torch.stack([w, f, w * w, f * f, w * f], dim=2).flatten(0, 1)
        sum_w, sum_f, sum_ww, sum_ff, sum_wf = _box_sum(stats, window).unbind(dim=1)
        count = _box_sum(torch.ones_like(stats[:1, :1]), window)[:, 0]
        mean_w = sum_w / count
        mean_f = sum_f / count
        cross = sum_wf - mean_w * sum_f
        # Clamped: E[x^2] - E[x]^2 can round below zero in flat regions and flip the denominator's sign.
        var_w = (sum_ww - mean_w * sum_w).clamp_min(0)
        var_f = (sum_ff - mean_f * sum_f).clamp_min(0)
        correlation = cross * cross / (var_w * var_f + eps)
        return -correlation.view(batch, channels, *w.shape[2:]).mean()


class MSELoss(nn.Module):
    """Module form of :func:`mse`."""

    def forward(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return mse(warped, fixed)


class LocalNCCLoss(nn.Module):
    """Module form of :func:`local_ncc`.

    Args:
        window: odd box side in voxels.
        eps: stabiliser added to the denominator.
    """

    def __init__(self, window: int = 9, eps: float = 1e-5) -> None:
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd integer, got {window!r}")
        self.window = window
        self.eps = eps

    def forward(self, warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return local_ncc(warped, fixed, window=self.window, eps=self.eps)

    def extra_repr(self) -> str:
        return f"window={self.window}, eps={self.eps}"


def similarity_loss(name: str, window: int = 9) -> nn.Module:
    """Build a similarity loss module by name.

    Args:
        name: ``"mse"`` or ``"ncc"``.
        window: box side for ``"ncc"`` (ignored by ``"mse"``).

    Example:
        >>> similarity_loss("ncc", window=5)
        LocalNCCLoss(window=5, eps=1e-05)
    """
    if name == "mse":
        return MSELoss()
    if name == "ncc":
        return LocalNCCLoss(window=window)
    raise ValueError(f"unknown similarity loss {name!r}; choose one of {SIMILARITY_NAMES}")
