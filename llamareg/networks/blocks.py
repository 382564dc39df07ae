"""Convolutional building blocks shared by the encoder and the decoder."""

from __future__ import annotations

from torch import nn

from llamareg.networks.conv import Conv3d, ConvTranspose3d

NEGATIVE_SLOPE = 0.2


def leaky_conv(in_channels: int, out_channels: int, stride: int = 1) -> Conv3d:
    """conv3x3x3 with He initialisation for LeakyReLU(0.2), which keeps feature scales near one through
    the encoder (PyTorch's default shrinks them by ~3x per layer, slowing early training)."""
    conv = Conv3d(in_channels, out_channels, 3, stride=stride, padding=1)
    nn.init.kaiming_normal_(conv.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return conv


class ConvBlock(nn.Sequential):
    """``convs`` times conv3x3x3 + LeakyReLU(0.2); no normalisation, as in the paper.

    Example:
        >>> block = ConvBlock(2, 8)
        >>> block(torch.zeros(1, 2, 16, 16, 16)).shape
        torch.Size([1, 8, 16, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, convs: int = 2) -> None:
        layers: list[nn.Module] = []
        for index in range(convs):
            layers.append(leaky_conv(in_channels if index == 0 else out_channels, out_channels))
            layers.append(nn.LeakyReLU(NEGATIVE_SLOPE))
        super().__init__(*layers)


class FlowHead(nn.Sequential):
    """conv(in -> 16) + LeakyReLU + conv(16 -> 3), the last initialised near zero so training starts at identity."""

    def __init__(self, in_channels: int, hidden_channels: int = 16) -> None:
        output = Conv3d(hidden_channels, 3, 3, padding=1)
        nn.init.normal_(output.weight, std=1e-5)
        nn.init.zeros_(output.bias)
        super().__init__(Conv3d(in_channels, hidden_channels, 3, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE), output)


def upsample_conv(in_channels: int, out_channels: int) -> nn.ConvTranspose3d:
    """Transposed convolution doubling each spatial size (kernel 2, stride 2; off the CPU's reference kernel)."""
    return ConvTranspose3d(in_channels, out_channels, kernel_size=2, stride=2)
