"""VoxelMorph (Balakrishnan et al., IEEE TMI 2019): a U-Net on the concatenated pair, full-resolution field."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llamareg.baselines.common import RegistrationNetwork, flow_conv
from llamareg.checks import check_int_sequence, check_shape
from llamareg.networks.blocks import NEGATIVE_SLOPE, leaky_conv
from llamareg.networks.memory_format import cat_channels
from llamareg.spatial.functional import integrate_velocity, resize_flow

STRIDE = 16


class ConvAct(nn.Sequential):
    """conv3x3x3 (stride 1 or 2) + LeakyReLU(0.2), VoxelMorph's ``conv_block``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(leaky_conv(in_channels, out_channels, stride), nn.LeakyReLU(NEGATIVE_SLOPE))


class VoxelMorph(RegistrationNetwork):
    """VoxelMorph: U-Net on ``cat(moving, fixed)`` and a conv flow layer (weights N(0, 1e-5)).

    Layout of the paper's network (and its original implementation): four stride-2 encoder convs
    (1/2 ... 1/16); decoder convs ``dec[0..2]`` each followed by nearest x2 upsampling and
    concatenation with the encoder features of that scale, ``dec[3]`` and ``dec[4]`` at 1/2, upsampling
    and concatenation with the input pair, ``dec[5]`` at full resolution and, for VoxelMorph-2,
    ``dec[6]``. All convs 3x3x3 + LeakyReLU(0.2) (initialised here for LeakyReLU, as the rest of
    llamareg). VoxelMorph-2 (enc 16, 32, 32, 32; dec 32, 32, 32, 32, 32, 16, 16): 300,547 parameters.

    With ``diffeomorphic`` the output is a stationary velocity field integrated by scaling and
    squaring (VoxelMorph-diff, Dalca et al. 2019: 7 steps, at half resolution with
    ``integration_downsize=2``).

    Args:
        shape: Input shape the model is built for, each side divisible by 16 (other such shapes work too).
        encoder_features: Widths of the four encoder convs.
        decoder_features: Widths of the decoder convs: 7 (VoxelMorph-2) or 6 (VoxelMorph-1).
        diffeomorphic: Integrate the output as a stationary velocity field.
        integration_steps: Scaling-and-squaring steps.
        integration_downsize: 1 (integrate at full resolution) or 2 (at half resolution, as vxm-diff).

    Example:
        >>> model = VoxelMorph((32, 32, 32), encoder_features=(4, 8, 8, 8), decoder_features=(8, 8, 8, 8, 8, 4, 4))
        >>> out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
        >>> [tuple(f.shape) for f in out["flows"]]
        [(1, 3, 32, 32, 32)]
    """

    stride = STRIDE

    def __init__(
        self,
        shape: Sequence[int],
        encoder_features: Sequence[int] = (16, 32, 32, 32),
        decoder_features: Sequence[int] = (32, 32, 32, 32, 32, 16, 16),
        diffeomorphic: bool = False,
        integration_steps: int = 7,
        integration_downsize: int = 1,
    ) -> None:
        super().__init__()
        self.shape = check_shape(shape, "VoxelMorph shape", multiple=STRIDE)
        enc = check_int_sequence(encoder_features, "encoder_features", 4)
        dec = check_int_sequence(decoder_features, "decoder_features")
        if len(dec) not in (6, 7):
            raise ValueError(
                f"decoder_features must have 7 entries (VoxelMorph-2) or 6 (VoxelMorph-1), got {len(dec)}: {decoder_features!r}"
            )
        if isinstance(integration_steps, bool) or not isinstance(integration_steps, int) or integration_steps < 0:
            raise ValueError(f"integration_steps must be a non-negative integer, got {integration_steps!r}")
        if integration_downsize not in (1, 2):
            raise ValueError(f"integration_downsize must be 1 or 2, got {integration_downsize!r}")
        self.diffeomorphic = bool(diffeomorphic)
        self.integration_steps = integration_steps
        self.integration_downsize = integration_downsize
        self.encoder = nn.ModuleList(ConvAct(2 if i == 0 else enc[i - 1], enc[i], stride=2) for i in range(4))
        self.decoder = nn.ModuleList(
            [
                ConvAct(enc[3], dec[0]),
                ConvAct(dec[0] + enc[2], dec[1]),
                ConvAct(dec[1] + enc[1], dec[2]),
                ConvAct(dec[2] + enc[0], dec[3]),
                ConvAct(dec[3], dec[4]),
                ConvAct(dec[4] + 2, dec[5]),
            ]
        )
        if len(dec) == 7:
            self.decoder.append(ConvAct(dec[5], dec[6]))
        self.flow = flow_conv(dec[-1])

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, object]:
        """Register ``moving`` to ``fixed`` (both ``(B, 1, D, H, W)``); ``flows`` holds the full-resolution field."""
        moving, fixed = self._checked_pair(moving, fixed)
        skips = [cat_channels([moving, fixed])]
        for conv in self.encoder:
            skips.append(conv(skips[-1]))
        x = skips[-1]
        for index in range(3):
            x = F.interpolate(self.decoder[index](x), scale_factor=2, mode="nearest")
            x = torch.cat([x, skips[-(index + 2)]], dim=1)
        x = self.decoder[4](self.decoder[3](x))
        x = torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skips[0]], dim=1)
        for conv in self.decoder[5:]:
            x = conv(x)
        flow = self.flow(x)
        if self.diffeomorphic:
            flow = self._integrate(flow)
        return self._outputs(moving, [flow])

    def _integrate(self, velocity: torch.Tensor) -> torch.Tensor:
        if self.integration_downsize == 1:
            return integrate_velocity(velocity, self.integration_steps)
        size = velocity.shape[2:]
        half = resize_flow(velocity, [s // 2 for s in size])
        return resize_flow(integrate_velocity(half, self.integration_steps), size)
