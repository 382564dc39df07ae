"""What the baseline networks share: argument checks, the common model interface, decoder convolutions.

Every baseline follows LLaMA-Reg's interface (:class:`llamareg.networks.llamareg.LLaMAReg`):
``forward(moving, fixed)`` takes two ``(B, 1, D, H, W)`` volumes and returns a dict with ``flows``
(displacement fields, coarsest first, in voxel units of their own grid, channel ``k`` along spatial
axis ``k``, ``warped(x) = moving(x + u(x))``), ``warped`` (the moving image warped at full
resolution) and ``full_flow`` (the field at the input's resolution: ``flows[-1]`` itself, or
upsampled from it while LapIRN trains its coarser levels). ``trainable_parameters()`` and
``parameter_counts()`` behave as LLaMA-Reg's.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from llamareg.checks import CROP_HINT, check_shape
from llamareg.networks.bookkeeping import ParameterBookkeeping
from llamareg.networks.conv import Conv3d
from llamareg.networks.memory_format import cat_channels, to_memory_format
from llamareg.spatial.functional import resize_flow, warp


def half_resolution(image: torch.Tensor) -> torch.Tensor:
    """3x3x3 stride-2 average pooling (padding 1, zeros counted), TransMorph's input to the 1/2-resolution
    skip; pooled in fp32 (the CPU has no half-precision avg_pool3d)."""
    return F.avg_pool3d(image.float(), 3, stride=2, padding=1).to(image.dtype)


class RegistrationNetwork(ParameterBookkeeping):
    """Base of the baselines: input checks and the output dict (parameter bookkeeping from
    :class:`ParameterBookkeeping`).

    Subclasses set ``stride`` (every input side must be divisible by it) and call
    :meth:`_checked_pair` and :meth:`_outputs` in ``forward``.
    """

    stride: int = 1
    memory_format: str = "contiguous"  # set by llamareg.networks.memory_format.set_memory_format

    def _checked_pair(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair, checked, in the network's memory format."""
        if moving.shape != fixed.shape or moving.dim() != 5 or moving.shape[1] != 1:
            raise ValueError(
                f"moving and fixed must both be (B, 1, D, H, W) of one shape, got {tuple(moving.shape)} and {tuple(fixed.shape)}"
            )
        check_shape(tuple(moving.shape[2:]), f"{type(self).__name__} input shape", multiple=self.stride, hint=CROP_HINT)
        return to_memory_format(moving, self.memory_format), to_memory_format(fixed, self.memory_format)

    def _outputs(self, moving: torch.Tensor, flows: list[torch.Tensor]) -> dict[str, object]:
        full = flows[-1]
        if full.shape[2:] != moving.shape[2:]:
            full = resize_flow(full, moving.shape[2:])
        return {"flows": flows, "warped": warp(moving, full), "full_flow": full}


class ConvNormAct(nn.Sequential):
    """conv3x3x3 (no bias) + InstanceNorm3d + LeakyReLU(0.01): TransMorph's and TransMatch's ``Conv3dReLU``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels),
            nn.LeakyReLU(0.01),
        )


class DecoderBlock(nn.Module):
    """Trilinear x2 upsampling, concatenation with the skip features, two :class:`ConvNormAct`.

    Example:
        >>> block = DecoderBlock(8, 4, skip_channels=4)
        >>> block(torch.zeros(1, 8, 2, 2, 2), torch.zeros(1, 4, 4, 4, 4)).shape
        torch.Size([1, 4, 4, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int = 0) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels + skip_channels, out_channels)
        self.conv2 = ConvNormAct(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
        if skip is not None:
            x = cat_channels([x, skip])
        return self.conv2(self.conv1(x))


def flow_conv(in_channels: int) -> Conv3d:
    """conv3x3x3 to a 3-channel field, weights N(0, 1e-5) and zero bias, so training starts near identity
    (VoxelMorph's flow layer and TransMorph's ``RegistrationHead``)."""
    conv = Conv3d(in_channels, 3, 3, padding=1)
    nn.init.normal_(conv.weight, std=1e-5)
    nn.init.zeros_(conv.bias)
    return conv
