"""Dual-stream convolutional encoder: one stream for the moving image, one for the fixed image."""

from __future__ import annotations

import torch
from torch import nn

from llamareg.networks.blocks import ConvBlock, leaky_conv

LEVELS = 5  # full, 1/2, 1/4, 1/8, 1/16


class EncoderStream(nn.Module):
    """One image's feature pyramid: C @1, 2C @1/2, 4C @1/4, 8C @1/8, 16C @1/16.

    Each downsampling is a stride-2 conv3x3x3 that doubles the channels (no activation); levels 1/2 to
    1/8 add a two-conv block, while the 1/16 level is the bare strided convolution (paper, Sec. 2).
    """

    def __init__(self, base_channels: int, in_channels: int = 1) -> None:
        super().__init__()
        channels = [base_channels * 2**level for level in range(LEVELS)]
        self.full = ConvBlock(in_channels, channels[0])
        self.down = nn.ModuleList(leaky_conv(channels[level - 1], channels[level], stride=2) for level in range(1, LEVELS))
        self.blocks = nn.ModuleList(ConvBlock(channels[level], channels[level]) for level in range(1, LEVELS - 1))
        self.channels = channels

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = [self.full(image)]
        for level, down in enumerate(self.down, start=1):
            x = down(features[-1])
            if level < LEVELS - 1:
                x = self.blocks[level - 1](x)
            features.append(x)
        return features


class DualStreamEncoder(nn.Module):
    """The moving and the fixed image's feature pyramids: two streams without shared weights (the
    paper), or with ``shared=True`` one stream run on both images (a Siamese encoder, ``stream``).

    With separate weights the decoder must learn to compare two unrelated random feature spaces
    before it can match anything; one shared stream gives both images the same features from the
    start. On the synthetic training data that cut the plateau before training starts to register
    (docs/model.md, "Shared encoder").

    Example:
        >>> encoder = DualStreamEncoder(base_channels=4)
        >>> moving, fixed = encoder(torch.zeros(1, 1, 32, 32, 32), torch.zeros(1, 1, 32, 32, 32))
        >>> [tuple(f.shape[1:]) for f in moving][-1]
        (64, 2, 2, 2)
        >>> sorted(DualStreamEncoder(base_channels=4, shared=True).state_dict())[0]
        'stream.blocks.0.0.bias'
    """

    def __init__(self, base_channels: int, shared: bool = False) -> None:
        super().__init__()
        self.shared = shared
        if shared:
            self.stream = EncoderStream(base_channels)
            self.channels = self.stream.channels
        else:
            self.moving = EncoderStream(base_channels)
            self.fixed = EncoderStream(base_channels)
            self.channels = self.moving.channels

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self.shared:
            return self.stream(moving), self.stream(fixed)
        return self.moving(moving), self.fixed(fixed)
