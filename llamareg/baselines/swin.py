"""3D Swin transformer pieces (Liu et al. 2021, in 3D as in TransMorph and TransMatch).

Window partition, shifted windows with their attention mask, relative position bias, patch
merging, the hierarchical encoder and a cross-attention stage (TransMatch's LWCA).

Token grids are channels-last volumes ``(B, D, H, W, C)``. A stage whose grid is not a multiple of
the window is padded up to one (as TransMorph does); unlike TransMorph, padded tokens are masked
out of attention, so results do not depend on the padding. Along an axis where the grid is no
larger than the window the window shrinks to the grid and that axis is not shifted (Swin's rule).
The relative position bias table is sized by the configured window, and a shrunk window indexes
a subset of it, so parameters never depend on the input shape.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llamareg.checks import check_int_sequence, check_positive_int, check_triple

Triple = tuple[int, int, int]


def _cached(function):
    """lru_cache for the index and mask builders, keyed by their arguments and an optional ``device``
    (the result is built on the CPU once and kept on each device it is asked for). Results are built
    outside inference mode, so that a first call under ``torch.inference_mode()`` does not cache
    tensors that autograd later refuses."""

    @functools.lru_cache(maxsize=64)
    def on_device(args: tuple, device: torch.device):
        with torch.inference_mode(False):
            result = function(*args) if device.type == "cpu" else on_device(args, torch.device("cpu"))
            return result if result is None else result.to(device)

    @functools.wraps(function)
    def wrapper(*args, device: torch.device | str = "cpu"):
        return on_device(args, torch.device(device))

    return wrapper


# --------------------------------------------------------------------------- functional pieces
def window_layout(grid: Sequence[int], window: Sequence[int], shifted: bool) -> tuple[Triple, Triple, Triple]:
    """The window, cyclic shift and padded grid one block uses on a token grid.

    Args:
        grid: Token grid ``(D, H, W)``.
        window: Configured window.
        shifted: Whether the block uses shifted windows (every second block).

    Returns:
        ``(window, shift, padded_grid)``: the window shrunk to the grid where the grid is smaller,
        the shift (half the window, 0 along axes the window covers entirely or when not shifted),
        and the grid padded up to a multiple of the window.

    Example:
        >>> window_layout((12, 16, 2), (5, 6, 7), shifted=True)
        ((5, 6, 2), (2, 3, 0), (15, 18, 2))
    """
    used = tuple(min(w, g) for w, g in zip(window, grid))
    shift = tuple(w // 2 if shifted and g > w else 0 for w, g in zip(used, grid))
    padded = tuple(math.ceil(g / w) * w for w, g in zip(used, grid))
    return used, shift, padded  # type: ignore[return-value]


def window_partition(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """``(B, D, H, W, C)`` with sides divisible by ``window`` -> ``(B, windows, tokens per window, C)``.

    Windows are ordered along D, then H, then W; tokens in a window likewise.

    Example:
        >>> window_partition(torch.zeros(2, 4, 6, 2, 8), (2, 3, 2)).shape
        torch.Size([2, 4, 12, 8])
    """
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, -1, wd * wh * ww, c)


def window_reverse(windows: torch.Tensor, window: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B, windows, tokens, C)`` -> ``(B, D, H, W, C)``."""
    b, _, _, c = windows.shape
    d, h, w = grid
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, c)


@_cached
def relative_position_index(window: Triple, table_window: Triple) -> torch.Tensor:
    """``(N, N)`` rows of a ``table_window``-sized bias table for the token pairs of a ``window`` (N tokens).

    Entry ``[i, j]`` encodes the offset of token ``i`` from token ``j``, each component shifted to
    start at 0, in the table's mixed radix ``(2T-1)`` per axis. ``window`` must not exceed ``table_window``.

    Example:
        >>> relative_position_index((1, 1, 2), (1, 1, 2)).tolist()
        [[1, 0], [2, 1]]
    """
    if any(w > t for w, t in zip(window, table_window)):
        raise ValueError(f"window {window} exceeds the bias table's window {table_window}")
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
    relative = coords[:, :, None] - coords[:, None, :]
    span = [2 * t - 1 for t in table_window]
    return (
        (relative[0] + table_window[0] - 1) * span[1] * span[2]
        + (relative[1] + table_window[1] - 1) * span[2]
        + (relative[2] + table_window[2] - 1)
    )


@_cached
def window_regions(grid: Triple, window: Triple, shift: Triple) -> torch.Tensor:
    """Region label of every token of every window, ``(windows, tokens)``, in the padded, shifted frame.

    After the cyclic shift a window may hold tokens that were far apart (wrapped around the
    volume); Swin labels the three stretches ``[0, P-w)``, ``[P-w, P-s)``, ``[P-s, P)`` of each padded
    axis ``P`` so that tokens attend only within their stretch. Padding tokens get label -1.
    """
    padded = tuple(math.ceil(g / w) * w for g, w in zip(grid, window))
    labels = []
    pads = []
    for size, real, w, s in zip(padded, grid, window, shift):
        position = torch.arange(size)
        if s:
            label = torch.where(position < size - w, 0, torch.where(position < size - s, 1, 2))
        else:
            label = torch.zeros(size, dtype=torch.long)
        labels.append(label)
        pads.append((position + s) % size >= real)  # original position of what the roll put here
    ld, lh, lw = torch.meshgrid(*labels, indexing="ij")
    pd, ph, pw = torch.meshgrid(*pads, indexing="ij")
    region = torch.where(pd | ph | pw, -1, ld * 9 + lh * 3 + lw)
    return window_partition(region[None, ..., None], window)[0, ..., 0]


@_cached
def window_attention_mask(grid: Triple, window: Triple, shift: Triple) -> torch.Tensor | None:
    """Which token pairs of each window may attend, ``(windows, tokens, tokens)`` bool, or None if all may.

    ``[w, i, j]`` is True when tokens ``i`` and ``j`` of window ``w`` lie in the same region of the
    shifted layout (neighbours in the unshifted volume) and are both real or both padding.

    Example:
        >>> mask = window_attention_mask((4, 1, 1), (2, 1, 1), (1, 0, 0))
        >>> mask[1].tolist()  # the last window holds the last token and the first, wrapped round
        [[True, False], [False, True]]
    """
    padded = tuple(math.ceil(g / w) * w for g, w in zip(grid, window))
    if not any(shift) and padded == tuple(grid):
        return None
    regions = window_regions(grid, window, shift)
    return regions[:, :, None] == regions[:, None, :]


# --------------------------------------------------------------------------- modules
class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample with probability ``rate`` while training."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learned relative position bias (W-MSA / SW-MSA).

    With ``context`` the queries come from it and keys and values from ``x`` (TransMatch's LWCA,
    as released: one ``qkv`` projection serves both streams).

    Args:
        dim: Token width.
        heads: Attention heads; must divide ``dim``.
        window: Largest window the bias table covers.
        qkv_bias: Bias on the query/key/value projection (TransMorph: False).
    """

    def __init__(self, dim: int, heads: int, window: Triple, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide the token width ({dim})")
        self.heads = heads
        self.window = tuple(window)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(math.prod(2 * w - 1 for w in window), heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, window: Triple, mask: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` (and ``context``): ``(B, windows, N, C)``; ``mask``: ``(windows, N, N)`` bool (True = may attend)."""
        b, nw, n, c = x.shape
        head_dim = c // self.heads
        if context is None:
            q, k, v = self.qkv(x).view(b, nw, n, 3, self.heads, head_dim).permute(3, 0, 1, 4, 2, 5)
        else:
            weight, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(context, weight[:c], None if bias is None else bias[:c])
            q = q.view(b, nw, n, self.heads, head_dim).transpose(2, 3)
            kv = F.linear(x, weight[c:], None if bias is None else bias[c:])
            k, v = kv.view(b, nw, n, 2, self.heads, head_dim).permute(3, 0, 1, 4, 2, 5)
        index = relative_position_index(tuple(window), self.window, device=x.device)
        bias = self.relative_position_bias_table[index.view(-1)].view(1, n, n, self.heads).permute(0, 3, 1, 2)
        if mask is not None:
            bias = bias.masked_fill(~mask[:, None], float("-inf"))  # (windows, heads, N, N)
            if b > 1:
                bias = bias.repeat(b, 1, 1, 1)  # rows ordered (batch, window) like the queries
        # 4D (batch x windows, heads, N, head_dim) so that fused attention kernels apply.
        q, k, v = (t.reshape(b * nw, self.heads, n, head_dim) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.view(b, nw, self.heads, n, head_dim).transpose(2, 3).reshape(b, nw, n, c))


class SwinBlock(nn.Module):
    """One Swin block: (shifted-)window attention and an MLP, each pre-norm and residual.

    Args:
        dim: Token width.
        heads: Attention heads.
        window: Window size (shrunk per axis on smaller grids).
        shifted: Shift the windows by half a window (SW-MSA) instead of W-MSA.
        mlp_ratio: MLP hidden width / ``dim``.
        qkv_bias: Bias on the q/k/v projection.
        drop_path: Stochastic depth rate.

    Example:
        >>> block = SwinBlock(8, 2, (2, 2, 2), shifted=True)
        >>> block(torch.zeros(1, 4, 4, 3, 8)).shape
        torch.Size([1, 4, 4, 3, 8])
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: Triple,
        shifted: bool,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.window = tuple(window)
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.window, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _windows(self, x: torch.Tensor, window: Triple, shift: Triple, padded: Triple) -> torch.Tensor:
        grid = x.shape[1:4]
        x = F.pad(x, (0, 0, 0, padded[2] - grid[2], 0, padded[1] - grid[1], 0, padded[0] - grid[0]))
        if any(shift):
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        return window_partition(x, window)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (and ``context``, the other stream for cross-attention): ``(B, D, H, W, C)``."""
        grid = tuple(x.shape[1:4])
        window, shift, padded = window_layout(grid, self.window, self.shifted)
        mask = window_attention_mask(grid, window, shift, device=x.device)
        windows = self._windows(self.norm1(x), window, shift, padded)
        context_windows = None if context is None else self._windows(self.norm1(context), window, shift, padded)
        attended = window_reverse(self.attn(windows, window, mask, context_windows), window, padded)
        if any(shift):
            attended = torch.roll(attended, shifts=shift, dims=(1, 2, 3))
        attended = attended[:, : grid[0], : grid[1], : grid[2]]
        x = x + self.drop_path(attended)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halve the token grid: concatenate each 2x2x2 group (8C), LayerNorm, linear to 2C (no bias)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8 * dim)
        self.reduction = nn.Linear(8 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % 2 for s in x.shape[1:4]):
            raise ValueError(f"patch merging needs an even token grid, got {tuple(x.shape[1:4])}")
        parts = [
            x[:, i::2, j::2, k::2] for i, j, k in ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1))
        ]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class SwinStage(nn.Module):
    """``depth`` Swin blocks alternating W-MSA and SW-MSA; optionally followed by patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        window: Triple,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_paths: Sequence[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, shifted=index % 2 == 1, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_paths[index])
            for index in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stage's output and, with merging, the next stage's input."""
        for block in self.blocks:
            x = block(x)
        return x, (self.downsample(x) if self.downsample is not None else None)


def check_window(window: Sequence[int], shape: Sequence[int], patch_size: int, name: str = "window_size") -> None:
    """ValueError naming ``name`` unless ``window`` fits the first stage's token grid for ``shape``.

    (Coarser stages shrink the window to their grid, and grids that are not multiples of the window
    are padded, so any window up to the first grid works.)
    """
    grid = tuple(s // patch_size for s in shape)
    if any(w > g for w, g in zip(window, grid)):
        raise ValueError(
            f"{name} {tuple(window)} exceeds the first stage's token grid {grid} (input {tuple(shape)} / patch {patch_size}); "
            "use a window no larger than the grid, e.g. a divisor of it"
        )


class SwinEncoder(nn.Module):
    """Hierarchical 3D Swin encoder (TransMorph's): patch embedding, stages, a LayerNorm per output.

    Args:
        in_channels: Input channels (TransMorph: 2, the concatenated pair; TransMatch: 1 per stream).
        embed_dim: Token width of the first stage; it doubles at each stage.
        depths: Blocks per stage.
        num_heads: Attention heads per stage.
        window_size: Attention window.
        patch_size: Side of the patches the first stage embeds (the first grid is the input / patch).
        mlp_ratio: MLP hidden width / token width.
        qkv_bias: Bias on the q/k/v projections.
        drop_path_rate: Stochastic depth, rising linearly from 0 to this over all blocks.

    Returns (forward): One ``(B, C_i, D_i, H_i, W_i)`` feature map per stage, at 1/patch, 1/(2 patch), ...

    Example:
        >>> encoder = SwinEncoder(1, 8, (1, 1), (2, 2), (2, 2, 2))
        >>> [tuple(f.shape) for f in encoder(torch.zeros(1, 1, 16, 16, 16))]
        [(1, 8, 4, 4, 4), (1, 16, 2, 2, 2)]
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_size: Sequence[int],
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(embed_dim, "embed_dim")
        depths = check_int_sequence(depths, "depths")
        num_heads = check_int_sequence(num_heads, "num_heads", len(depths))
        window = check_triple(window_size, "window_size")
        check_positive_int(patch_size, "patch_size")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.channels = [embed_dim * 2**i for i in range(len(depths))]
        for i, (channels, heads) in enumerate(zip(self.channels, num_heads)):
            if channels % heads:
                raise ValueError(f"num_heads[{i}] = {heads} must divide stage {i}'s width {channels} (embed_dim x 2^{i})")
        self.patch_size = patch_size
        self.window = window
        self.patch_embed = nn.Conv3d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.patch_norm = nn.LayerNorm(embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        start = 0
        for i, depth in enumerate(depths):
            self.stages.append(
                SwinStage(
                    self.channels[i], depth, num_heads[i], window, mlp_ratio, qkv_bias, rates[start : start + depth], i < len(depths) - 1
                )
            )
            start += depth
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.channels)
        self.apply(_init_linear)

    @property
    def stride(self) -> int:
        """Input sides must be divisible by this: patch size x 2^(stages - 1)."""
        return self.patch_size * 2 ** (len(self.stages) - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_norm(self.patch_embed(x).permute(0, 2, 3, 4, 1))
        features = []
        for stage, norm in zip(self.stages, self.norms):
            out, x = stage(x)
            features.append(norm(out).permute(0, 4, 1, 2, 3).contiguous())
        return features


class CrossAttentionStage(nn.Module):
    """TransMatch's local-window cross-attention (LWCA) at one level: ``depth`` Swin blocks alternating
    W-MCA and SW-MCA whose queries come from the other stream, then a LayerNorm.

    Example:
        >>> stage = CrossAttentionStage(8, depth=2, heads=2, window=(2, 2, 2))
        >>> stage(torch.zeros(1, 8, 4, 4, 4), torch.ones(1, 8, 4, 4, 4)).shape
        torch.Size([1, 8, 4, 4, 4])
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        window: Triple,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_paths: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        drop_paths = list(drop_paths) if drop_paths is not None else [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, shifted=index % 2 == 1, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_paths[index])
            for index in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(_init_linear)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x``, ``context``: ``(B, C, D, H, W)`` features of this stream and of the other one."""
        x, context = x.permute(0, 2, 3, 4, 1), context.permute(0, 2, 3, 4, 1)
        for block in self.blocks:
            x = block(x, context)
        return self.norm(x).permute(0, 4, 1, 2, 3).contiguous()


def _init_linear(module: nn.Module) -> None:
    """Swin's initialisation: linear weights truncated normal (std 0.02), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
