"""A 3D convolution that stays on oneDNN in float32 on the CPU.

PyTorch sends a float32 CPU convolution to its reference kernel (``slow_conv3d``, forward and backward)
when the batch is 1, the groups 1, the kernel at most 3 wide and batch x channels x depth x height at
most 20480 (``use_mkldnn`` in aten/src/ATen/native/Convolution.cpp): every convolution of a 32^3
``cpu-default`` volume and the deeper levels of larger ones. A grouped convolution always goes to
oneDNN, which is 4-6x faster at these sizes, so such a convolution is computed as one with two groups,
whichever of two ways moves less memory:

* fewer input than output channels: the input twice, each copy convolved with half of the filters,
  ``W * x = cat(W[:o] * x, W[o:] * x)``, which needs no change to the weight and no sum;
* otherwise: the two halves of the input channels, and the halves' outputs added,
  ``W * x = W[:, :h] * x[:h] + W[:, h:] * x[h:]``.

Same arithmetic up to float rounding, same parameters, and the input's memory format is kept.

The decoder's transposed convolutions (kernel 2, stride 2) go to PyTorch's reference kernel
(``slow_conv_transpose3d``) in float32 on the CPU whatever their size. With kernel = stride no two
input voxels write the same output voxel, so :class:`ConvTranspose3d` computes one as a matrix product
over channels, ``x^T W`` with ``W`` of shape ``(C_in, C_out * 8)``, and puts each voxel's eight
outputs in place (depth-to-space): the same arithmetic, on the fast matrix-multiply kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# PyTorch's bound on batch x channels x depth x height below which it picks the reference kernel.
REFERENCE_KERNEL_MAX_ELEMENTS = 20480


def takes_reference_kernel(x: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    """Whether PyTorch would run this float32 CPU convolution on its slow reference kernel."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or groups != 1 or x.shape[0] != 1:
        return False
    if torch.is_autocast_enabled("cpu"):  # autocast runs it in bf16/fp16, on oneDNN
        return False
    if weight.shape[-1] > 3 and weight.shape[-2] > 3:
        return False
    return x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] <= REFERENCE_KERNEL_MAX_ELEMENTS


def conv3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride=1, padding=0, dilation=1, groups: int = 1
) -> torch.Tensor:
    """``F.conv3d``, computed as a two-group convolution where PyTorch would use its reference kernel.

    Example:
        >>> x, w, b = torch.rand(1, 3, 8, 8, 8), torch.rand(4, 3, 3, 3, 3), torch.rand(4)
        >>> torch.allclose(conv3d(x, w, b, padding=1), F.conv3d(x, w, b, padding=1), atol=1e-5)
        True
    """
    if not takes_reference_kernel(x, weight, groups):
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    if x.shape[1] < weight.shape[0] and weight.shape[0] % 2 == 0:
        return F.conv3d(torch.cat([x, x], dim=1), weight, bias, stride, padding, dilation, groups=2)
    if x.shape[1] % 2:  # an odd channel count gets a zero channel (and zero weights) to split evenly
        x = torch.cat([x, x.new_zeros(1, 1, *x.shape[2:])], dim=1)
        weight = torch.cat([weight, weight.new_zeros(weight.shape[0], 1, *weight.shape[2:])], dim=1)
    half = x.shape[1] // 2
    halves = F.conv3d(x, torch.cat([weight[:, :half], weight[:, half:]]), None, stride, padding, dilation, groups=2)
    out_channels = weight.shape[0]
    out = halves[:, :out_channels] + halves[:, out_channels:]
    return out if bias is None else out + bias.view(1, -1, 1, 1, 1)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same arguments, parameters and state dict) that calls :func:`conv3d`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return conv3d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def transposed_conv3d_2x(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv_transpose3d(x, weight, bias, stride=2)`` for a ``(C_in, C_out, 2, 2, 2)`` kernel, as a
    matrix product and a depth-to-space rearrangement (no reference kernel on the CPU).

    Example:
        >>> x, w, b = torch.rand(1, 3, 4, 5, 6), torch.rand(3, 2, 2, 2, 2), torch.rand(2)
        >>> torch.allclose(transposed_conv3d_2x(x, w, b), F.conv_transpose3d(x, w, b, stride=2), atol=1e-6)
        True
    """
    batch, _, depth, height, width = x.shape
    out_channels = weight.shape[1]
    columns = x.permute(0, 2, 3, 4, 1) @ weight.flatten(1).to(x.dtype)  # (B, D, H, W, C_out * 8)
    out = columns.view(batch, depth, height, width, out_channels, 2, 2, 2).permute(0, 4, 1, 5, 2, 6, 3, 7)
    out = out.reshape(batch, out_channels, 2 * depth, 2 * height, 2 * width)
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1, 1)
    if x.is_contiguous(memory_format=torch.channels_last_3d):
        return out.contiguous(memory_format=torch.channels_last_3d)
    return out.contiguous()


class ConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` (same arguments, parameters and state dict); with kernel 2 and stride 2 on
    the CPU it calls :func:`transposed_conv3d_2x` instead of PyTorch's reference kernel."""

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        plain = (
            self.kernel_size == (2, 2, 2)
            and self.stride == (2, 2, 2)
            and self.padding == (0, 0, 0)
            and self.output_padding == (0, 0, 0)
            and self.dilation == (1, 1, 1)
            and self.groups == 1
            and output_size is None
        )
        if not plain or input.device.type != "cpu" or input.ndim != 5:
            return super().forward(input, output_size)
        return transposed_conv3d_2x(input, self.weight, self.bias)
