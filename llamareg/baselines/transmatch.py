"""TransMatch (Chen, Zheng & Gee, IEEE TMI 2023): dual-stream Swin encoders, local-window cross-attention, multi-scale decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llamareg.baselines.common import ConvNormAct, DecoderBlock, RegistrationNetwork, flow_conv, half_resolution
from llamareg.checks import check_positive_int, check_shape, check_triple
from llamareg.baselines.swin import CrossAttentionStage, SwinEncoder, check_window
from llamareg.networks.memory_format import cat_channels


class TransMatch(RegistrationNetwork):
    """TransMatch: each image has its own Swin encoder (local-window self-attention, LWSA); at every
    level a local-window cross-attention module (LWCA) matches the two streams; a decoder fuses the
    matched features of both streams level by level into the field.

    At level i the LWCA module (``cross_depth`` Swin blocks alternating W-MCA and SW-MCA, queries from
    the other stream, keys and values from this one, then a LayerNorm; one module per level serves
    both directions, as released) gives ``m_i = LWCA_i(moving_i, fixed_i)`` and
    ``f_i = LWCA_i(fixed_i, moving_i)``. The decoder starts from the deepest ``m``, and at each finer
    level upsamples (trilinear x2) and concatenates ``m_i`` and ``f_i`` before two
    conv-InstanceNorm-LeakyReLU; then it goes to 1/2 resolution with a skip from a convolution on the
    average-pooled pair (embed_dim/2 channels), upsamples to full resolution and a conv head (init
    near zero) gives the displacement.

    Published configuration (LPBA40, 160x192x160): patch 4, embed_dim 96, depths (2, 2, 4, 2), heads
    (4, 4, 8, 8), window (5, 6, 5), MLP ratio 4, no q/k/v bias, stochastic depth 0.3; LWCA with 2 blocks
    and 4 heads at every level.

    Differences from the public release, which the paper's description decides: the release calls
    its moving-image encoder for both images (the fixed encoder is built but unused); here each
    stream has its own encoder (``shared_encoder=True`` gives the release's behaviour and parameter
    count). The release also builds modules its forward never uses (a full-resolution conv skip and
    decoder block, an unused conv per decoder block); they are left out.

    Args:
        shape: Input shape the model is built for; sides divisible by :attr:`stride` =
            ``patch_size x 2^(len(depths) - 1)`` (32 for the published four stages).
        embed_dim: First stage's token width (doubling per stage).
        depths: Swin blocks per encoder stage.
        num_heads: Attention heads per encoder stage.
        window_size: Attention window, for the encoders and the LWCA modules; must not exceed the
            first stage's token grid.
        patch_size: Patch side.
        mlp_ratio: MLP width / token width.
        qkv_bias: Bias on the q/k/v projections.
        drop_path_rate: Stochastic depth of the encoders (linear up to this rate); each LWCA module uses
            the first ``cross_depth`` rates of that schedule, as released.
        cross_depth: Blocks per LWCA module.
        cross_heads: Attention heads of every LWCA module.
        shared_encoder: One encoder for both images (the release's behaviour).

    Example:
        >>> model = TransMatch((32, 32, 32), embed_dim=8, depths=(1, 1), num_heads=(2, 2), window_size=4, cross_heads=2)
        >>> out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
        >>> tuple(out["flows"][-1].shape), model.stride
        ((1, 3, 32, 32, 32), 8)
    """

    def __init__(
        self,
        shape: Sequence[int],
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 4, 2),
        num_heads: Sequence[int] = (4, 4, 8, 8),
        window_size: int | Sequence[int] = (5, 6, 5),
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path_rate: float = 0.3,
        cross_depth: int = 2,
        cross_heads: int = 4,
        shared_encoder: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int(embed_dim, "embed_dim")
        if embed_dim < 2:
            raise ValueError(f"embed_dim must be >= 2 (the 1/2-resolution skip has embed_dim // 2 channels), got {embed_dim}")
        check_positive_int(cross_depth, "cross_depth")
        check_positive_int(cross_heads, "cross_heads")
        window = check_triple(window_size, "window_size")

        def encoder() -> SwinEncoder:
            return SwinEncoder(1, embed_dim, depths, num_heads, window, patch_size, mlp_ratio, qkv_bias, drop_path_rate)

        self.moving_encoder = encoder()
        self.fixed_encoder = self.moving_encoder if shared_encoder else encoder()
        self.stride = self.moving_encoder.stride
        self.shape = check_shape(shape, "TransMatch shape", multiple=self.stride)
        check_window(window, self.shape, patch_size)
        channels = self.moving_encoder.channels
        for i, c in enumerate(channels):
            if c % cross_heads:
                raise ValueError(f"cross_heads ({cross_heads}) must divide every level's width; level {i} has {c}")
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()[:cross_depth]
        rates += [rates[-1]] * (cross_depth - len(rates))
        self.cross = nn.ModuleList(CrossAttentionStage(c, cross_depth, cross_heads, window, mlp_ratio, qkv_bias, rates) for c in channels)
        self.up = nn.ModuleList(
            DecoderBlock(channels[i + 1], channels[i], skip_channels=2 * channels[i]) for i in reversed(range(len(channels) - 1))
        )
        half = embed_dim // 2
        self.skip_half = ConvNormAct(2, half)
        self.up_half = DecoderBlock(channels[0], half, skip_channels=half)
        self.reg_head = flow_conv(half)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, object]:
        """Register ``moving`` to ``fixed`` (both ``(B, 1, D, H, W)``); ``flows`` holds the full-resolution field."""
        moving, fixed = self._checked_pair(moving, fixed)
        moving_features = self.moving_encoder(moving)
        fixed_features = self.fixed_encoder(fixed)
        moving_matched = [cross(m, f) for cross, m, f in zip(self.cross, moving_features, fixed_features)]
        fixed_matched = [cross(f, m) for cross, m, f in zip(self.cross[:-1], moving_features, fixed_features)]
        x = moving_matched[-1]
        for block, m, f in zip(self.up, reversed(moving_matched[:-1]), reversed(fixed_matched)):
            x = block(x, cat_channels([m, f]))
        pair = cat_channels([moving, fixed])
        x = self.up_half(x, self.skip_half(half_resolution(pair)))
        x = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
        return self._outputs(moving, [self.reg_head(x)])
