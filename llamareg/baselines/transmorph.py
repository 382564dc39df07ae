"""TransMorph (Chen et al., Medical Image Analysis 2022): Swin encoder on the concatenated pair, CNN decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llamareg.baselines.common import ConvNormAct, DecoderBlock, RegistrationNetwork, flow_conv, half_resolution
from llamareg.checks import check_positive_int, check_shape, check_triple
from llamareg.baselines.swin import SwinEncoder, check_window
from llamareg.networks.memory_format import cat_channels


class TransMorph(RegistrationNetwork):
    """TransMorph: a 3D Swin transformer encoder and a convolutional decoder with skips, full-resolution field.

    The moving and fixed images are concatenated (2 channels) and embedded as 4x4x4 patches; the
    Swin stages give features at 1/4, 1/8, ... (widths embed_dim x 1, 2, 4, ...). The decoder climbs
    back stage by stage (trilinear x2, concatenation with the stage's features, two
    conv-InstanceNorm-LeakyReLU), then to 1/2 and full resolution with skips from two convolutions on
    the input pair (at 1/2, after 3x3x3 stride-2 average pooling, with embed_dim/2 channels, and at full
    resolution with ``reg_head_channels``), and a conv head (init near zero) gives the displacement.

    Published configuration (160x192x224 brain MRI): patch 4, embed_dim 96, depths (2, 2, 4, 2), heads
    (4, 4, 8, 8), window (5, 6, 7), MLP ratio 4, no q/k/v bias, stochastic depth 0.3, head width 16:
    46.77M parameters.

    Args:
        shape: Input shape (D, H, W) the model is built for; each side divisible by :attr:`stride` =
            ``patch_size x 2^(len(depths) - 1)`` (32 for the published four stages). Other shapes
            divisible by the stride work too.
        embed_dim: First stage's token width.
        depths: Swin blocks per stage.
        num_heads: Attention heads per stage.
        window_size: Attention window (int or three ints); must not exceed the first stage's token
            grid ``shape / patch_size``. Coarser grids shrink it; grids that are not multiples of it
            are padded with masked tokens.
        patch_size: Patch side.
        mlp_ratio: MLP width / token width.
        qkv_bias: Bias on the q/k/v projections.
        drop_path_rate: Stochastic depth (linear over the blocks up to this rate).
        reg_head_channels: Width of the full-resolution decoder block and conv skip.

    Example:
        >>> model = TransMorph((32, 32, 32), embed_dim=8, depths=(1, 1), num_heads=(2, 2), window_size=4)
        >>> out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
        >>> [tuple(f.shape) for f in out["flows"]], model.stride
        ([(1, 3, 32, 32, 32)], 8)
    """

    def __init__(
        self,
        shape: Sequence[int],
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 4, 2),
        num_heads: Sequence[int] = (4, 4, 8, 8),
        window_size: int | Sequence[int] = (5, 6, 7),
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path_rate: float = 0.3,
        reg_head_channels: int = 16,
    ) -> None:
        super().__init__()
        check_positive_int(embed_dim, "embed_dim")
        if embed_dim < 2:
            raise ValueError(f"embed_dim must be >= 2 (the 1/2-resolution skip has embed_dim // 2 channels), got {embed_dim}")
        check_positive_int(reg_head_channels, "reg_head_channels")
        window = check_triple(window_size, "window_size")
        self.encoder = SwinEncoder(2, embed_dim, depths, num_heads, window, patch_size, mlp_ratio, qkv_bias, drop_path_rate)
        self.stride = self.encoder.stride
        self.shape = check_shape(shape, "TransMorph shape", multiple=self.stride)
        check_window(window, self.shape, patch_size)
        channels = self.encoder.channels
        self.up = torch.nn.ModuleList(
            DecoderBlock(channels[i + 1], channels[i], skip_channels=channels[i]) for i in reversed(range(len(channels) - 1))
        )
        half = embed_dim // 2
        self.skip_half = ConvNormAct(2, half)
        self.skip_full = ConvNormAct(2, reg_head_channels)
        self.up_half = DecoderBlock(channels[0], half, skip_channels=half)
        self.up_full = DecoderBlock(half, reg_head_channels, skip_channels=reg_head_channels)
        self.reg_head = flow_conv(reg_head_channels)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, object]:
        """Register ``moving`` to ``fixed`` (both ``(B, 1, D, H, W)``); ``flows`` holds the full-resolution field."""
        moving, fixed = self._checked_pair(moving, fixed)
        pair = cat_channels([moving, fixed])
        features = self.encoder(pair)
        x = features[-1]
        for block, skip in zip(self.up, reversed(features[:-1])):
            x = block(x, skip)
        x = self.up_half(x, self.skip_half(half_resolution(pair)))
        x = self.up_full(x, self.skip_full(pair))
        return self._outputs(moving, [self.reg_head(x)])
