"""LapIRN (Mok & Chung, MICCAI 2020): a three-level Laplacian pyramid of registration networks, trained coarse to fine."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import nn

from llamareg.baselines.common import RegistrationNetwork
from llamareg.checks import check_positive_int, check_shape
from llamareg.networks.conv import Conv3d, ConvTranspose3d
from llamareg.networks.flow_fields import FlowFieldRules
from llamareg.networks.memory_format import cat_channels
from llamareg.networks.phases import DeclaredPhase
from llamareg.spatial.functional import warp
from llamareg.spatial.pyramid import image_pyramid

LEVELS = 3
STRIDE = 8  # level 1 works at 1/4 and its encoder halves that once more
# The release's recipe: level 1 (30k iterations); level 2 with level 1 frozen (2k), then both (28k);
# level 3 with levels 1-2 frozen (2k), then all (58k). (phase, levels that run, coarser levels frozen).
RELEASE_PHASES = (("level1", 1, True), ("level2-warmup", 2, True), ("level2", 2, False), ("level3-warmup", 3, True), ("level3", 3, False))


class PreActBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(lrelu(conv(lrelu(x))))``, 3x3x3 convs without bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv3d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = Conv3d(channels, channels, 3, padding=1, bias=False)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class LapIRNLevel(nn.Module):
    """One pyramid level: feature encoder, stride-2 conv, residual blocks, transposed conv, output head.

    Input: the pair at the level's resolution (level 1) or the moving image warped by the upsampled
    coarser field, the fixed image and that field (levels 2, 3). The coarser level's feature
    embedding (at half the level's resolution) is added after the stride-2 conv. The head
    (conv-LeakyReLU-conv, Softsign) outputs a displacement in normalised [-1, 1] coordinates times
    ``range_flow``; its last conv starts near zero (N(0, 1e-5)) so training starts at identity.

    Example:
        >>> level = LapIRNLevel(2, features=8)
        >>> field, embedding = level(torch.zeros(1, 2, 8, 8, 8))
        >>> tuple(field.shape), tuple(embedding.shape)
        ((1, 3, 8, 8, 8), (1, 8, 8, 8, 8))
    """

    def __init__(self, in_channels: int, features: int, resblocks: int = 5, range_flow: float = 0.4) -> None:
        super().__init__()
        self.range_flow = range_flow
        self.encoder = nn.Sequential(
            Conv3d(in_channels, features, 3, padding=1, bias=False),
            nn.LeakyReLU(0.2),
            Conv3d(features, features, 3, padding=1, bias=False),
        )
        self.down = Conv3d(features, features, 3, stride=2, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for _ in range(resblocks):
            blocks += [PreActBlock(features), nn.LeakyReLU(0.2)]
        self.resblocks = nn.Sequential(*blocks)
        self.up = ConvTranspose3d(features, features, 2, stride=2, bias=False)
        last = Conv3d(features, 3, 3, padding=1, bias=False)
        nn.init.normal_(last.weight, std=1e-5)
        self.head = nn.Sequential(Conv3d(2 * features, features, 3, padding=1, bias=False), nn.LeakyReLU(0.2), last, nn.Softsign())

    def forward(self, inputs: torch.Tensor, coarse_embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The level's field (normalised units) and its feature embedding (at the level's resolution,
        which is half the next level's: it is added after that level's stride-2 conv)."""
        features = self.encoder(inputs)
        embedding = self.down(features)
        if coarse_embedding is not None:
            embedding = embedding + coarse_embedding
        embedding = self.up(self.resblocks(embedding))
        return self.head(cat_channels([embedding, features])) * self.range_flow, embedding


def _unit_scale(size: Sequence[int], reference: torch.Tensor) -> torch.Tensor:
    """Voxels per normalised unit along each axis (align_corners=True: [-1, 1] spans n - 1 voxels)."""
    return torch.tensor([max(n - 1, 1) / 2 for n in size], device=reference.device, dtype=reference.dtype).view(1, 3, 1, 1, 1)


class LapIRN(RegistrationNetwork):
    """LapIRN: fields at 1/4, 1/2 and full resolution, each finer level refining the upsampled coarser field.

    Level 1 sees the pair at 1/4 resolution. Level k > 1 sees the moving image at its resolution
    warped by the upsampled field of level k-1, the fixed image and that field, and also receives
    level k-1's feature embedding; its residual field is added to the upsampled one (LapIRN's
    ``disp_add`` variant; ``combination="compose"`` composes instead). Images are average-pooled
    2x2x2 per level (llamareg's pyramid, which the multi-scale objective uses too; the release pools
    with 3x3x3 stride-2 windows). Fields are returned in voxel units (the network itself works in
    normalised units, as released, so ``range_flow`` bounds a level's residual to that fraction of
    half its grid).

    Published configuration: start_channel 7 (28 features per level), 5 residual blocks, range_flow
    0.4: 923,748 parameters for the three levels.

    Training, as in the paper and its release: level 1 alone (``train_levels(1)``; release 30k
    iterations); then level 2 with level 1 frozen for a warm-up (``train_levels(2)``; release 2k
    iterations) and then both together (``train_levels(2, freeze_coarser=False)``; the rest of 30k);
    then level 3 likewise (``train_levels(3)`` for the warm-up, then ``train_levels(3,
    freeze_coarser=False)``; 60k in all). In each phase the release scores only the finest active
    level, i.e. scale weights ``[0, ..., 0, 1]`` over the returned flows.

    Args:
        shape: Input shape the model is built for, each side divisible by 8 (other such shapes work too).
        features: Feature width of every level (the release's 4 x start_channel).
        resblocks: Residual blocks per level.
        range_flow: Bound of a level's residual field, in normalised units.
        combination: ``add`` (as released) or ``compose`` for combining a level's residual with the
            upsampled coarser field.
        active_levels: Levels run (1..3); see :meth:`train_levels`.

    Example:
        >>> model = LapIRN((32, 32, 32), features=8, active_levels=2)
        >>> out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
        >>> [tuple(f.shape[2:]) for f in out["flows"]], tuple(out["warped"].shape)
        ([(8, 8, 8), (16, 16, 16)], (1, 1, 32, 32, 32))
    """

    stride = STRIDE

    def __init__(
        self,
        shape: Sequence[int],
        features: int = 28,
        resblocks: int = 5,
        range_flow: float = 0.4,
        combination: str = "add",
        active_levels: int = LEVELS,
    ) -> None:
        super().__init__()
        self.shape = check_shape(shape, "LapIRN shape", multiple=STRIDE)
        check_positive_int(features, "features")
        check_positive_int(resblocks, "resblocks")
        if not range_flow > 0:
            raise ValueError(f"range_flow must be > 0, got {range_flow!r}")
        if combination not in ("add", "compose"):
            raise ValueError(f"combination must be 'add' or 'compose', got {combination!r}")
        self.rules = FlowFieldRules(combination, rescale_upsampled=True)
        self.levels = nn.ModuleList(LapIRNLevel(2 if k == 0 else 5, features, resblocks, range_flow) for k in range(LEVELS))
        self.active_levels = active_levels

    @property
    def active_levels(self) -> int:
        """Levels the forward pass runs (1: 1/4 only, 2: 1/4 and 1/2, 3: all)."""
        return self._active_levels

    @active_levels.setter
    def active_levels(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LEVELS:
            raise ValueError(f"active_levels must be 1, 2 or 3, got {value!r}")
        self._active_levels = value

    @staticmethod
    def training_phases() -> list[DeclaredPhase]:
        """The release's level-by-level recipe (``train.schedule=lapirn``), each phase starting from the
        previous one's best checkpoint: level 1; level 2 warm-up with level 1 frozen; levels 1-2; level 3
        warm-up with levels 1-2 frozen; levels 1-3."""
        return [
            DeclaredPhase(
                name,
                sizes={"active_levels": levels},
                fields=levels,
                trains={"lapirn_levels": levels, "lapirn_coarser_frozen": frozen},
                select=operator.methodcaller("train_levels", levels, freeze_coarser=frozen),
            )
            for name, levels, frozen in RELEASE_PHASES
        ]

    def train_levels(self, n: int, freeze_coarser: bool = True) -> None:
        """Run levels 1..``n``; train level ``n``, and levels below it only if not ``freeze_coarser``.

        Levels above ``n`` are frozen too (they do not run). See the class docstring for the schedule.
        """
        self.active_levels = n
        for index, level in enumerate(self.levels):
            level.requires_grad_(index == n - 1 or (index < n - 1 and not freeze_coarser))

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, object]:
        """Register ``moving`` to ``fixed`` (both ``(B, 1, D, H, W)``).

        Returns:
            ``flows``: the active levels' fields, coarsest first (1/4, 1/2, full); ``warped``: the
            moving image warped at full resolution by the finest field (upsampled if it is coarser);
            ``full_flow``: that full-resolution field.
        """
        moving, fixed = self._checked_pair(moving, fixed)
        moving_pyramid, fixed_pyramid = image_pyramid(moving, LEVELS), image_pyramid(fixed, LEVELS)
        grad_wanted = torch.is_grad_enabled()
        upstream_trains = False
        flows: list[torch.Tensor] = []
        field = embedding = None
        for index in range(self.active_levels):
            level = self.levels[index]
            upstream_trains = upstream_trains or any(p.requires_grad for p in level.parameters())
            with torch.set_grad_enabled(grad_wanted and upstream_trains):
                level_moving, level_fixed = moving_pyramid[index], fixed_pyramid[index]
                size = level_moving.shape[2:]
                scale = _unit_scale(size, level_moving)
                if field is None:
                    inputs = cat_channels([level_moving, level_fixed])
                    upsampled = None
                else:
                    upsampled = self.rules.upsample(field, size)
                    inputs = cat_channels([warp(level_moving, upsampled), level_fixed, upsampled / scale])
                residual, embedding = level(inputs, embedding)
                residual = residual * scale
                field = residual if upsampled is None else self.rules.combine(upsampled, residual)
            flows.append(field)
        return self._outputs(moving, flows)
