"""Baseline registration networks (issue 7): VoxelMorph, LapIRN, TransMorph and TransMatch.

Written here from their papers, with the published configurations as defaults. All four share
LLaMA-Reg's interface (see :mod:`llamareg.baselines.common`): ``forward(moving, fixed)`` returns
``{"flows": [...], "warped": ..., "full_flow": ...}``, plus ``trainable_parameters()`` and
``parameter_counts()``.

Example:
    >>> model = build_baseline("voxelmorph", (32, 32, 32), **CPU_SCALING["voxelmorph"])
    >>> model.stride, len(model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))["flows"])
    (16, 1)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from torch import nn

from llamareg.baselines.common import RegistrationNetwork
from llamareg.checks import look_up_option
from llamareg.baselines.lapirn import LapIRN
from llamareg.baselines.transmatch import TransMatch
from llamareg.baselines.transmorph import TransMorph
from llamareg.baselines.voxelmorph import VoxelMorph
from llamareg.baselines.vxm_package import VoxelMorphPackage

BASELINES: dict[str, type[RegistrationNetwork]] = {
    "voxelmorph": VoxelMorph,
    "lapirn": LapIRN,
    "transmorph": TransMorph,
    "transmatch": TransMatch,
}

# External references the comparison trains the same way: the voxelmorph PyPI package's own model
# (an optional dependency, imported when the model is built).
EXTERNAL: dict[str, type[RegistrationNetwork]] = {"voxelmorph-package": VoxelMorphPackage}

# Parameter counts the papers (or, where a paper gives none, the comparison tables citing them) report
# for the published configurations, and the input shape those configurations were built for.
PUBLISHED = {
    # VoxelMorph-2 (Balakrishnan et al. 2019); 0.30M in TransMorph's comparison table.
    "voxelmorph": {"parameters": 300_000, "shape": (160, 192, 224)},
    # LapIRN (Mok & Chung 2020), start_channel 7; 0.92M as cited in later comparisons.
    "lapirn": {"parameters": 920_000, "shape": (160, 192, 144)},
    # TransMorph (Chen et al. 2022), Table of model complexity: 46.77M.
    "transmorph": {"parameters": 46_770_000, "shape": (160, 192, 224)},
    # TransMatch (Chen, Zheng & Gee 2023), LPBA40 configuration. No reported count could be checked; this
    # build gives 96.34M (two encoders, as the paper describes) or 70.79M with ``shared_encoder=True``
    # (what the release's forward effectively trains).
    "transmatch": {"parameters": None, "shape": (160, 192, 160)},
}

# Recommended sizes for the CPU presets (48x64x48 volumes, 2 CPU cores, minutes per run). Widths are
# scaled so that each model's cost per iteration is comparable to cpu-default's LLaMA-Reg (C=8);
# topology, depths and heads keep the published choices except where the small volume forces a change.
CPU_SCALING: dict[str, dict[str, Any]] = {
    # Every feature count halved (0.30M -> ~76k parameters); topology unchanged.
    "voxelmorph": {"encoder_features": (8, 16, 16, 16), "decoder_features": (16, 16, 16, 16, 16, 8, 8)},
    # 28 -> 16 features per level (start_channel 7 -> 4; 0.92M -> ~0.30M); 5 residual blocks kept.
    "lapirn": {"features": 16},
    # Embedding 96 -> 24 (heads kept, so head width 24 -> 6..12). The fourth Swin stage is dropped:
    # at 48x64x48 the 1/32 grid would be 1.5x2x1.5 tokens (not even defined), while 1/16 is 3x4x3 --
    # about the published deepest grid (5x6x7) in tokens. Stride 16 instead of 32, like LLaMA-Reg.
    # Window 5x6x7 -> 3x4x3 so that it tiles the 12x16x12 first grid as the published one tiles
    # 40x48x56. Full-resolution head 16 -> 8 channels. No stochastic depth in runs this short.
    "transmorph": {
        "embed_dim": 24,
        "depths": (2, 2, 4),
        "num_heads": (4, 4, 8),
        "window_size": (3, 4, 3),
        "drop_path_rate": 0.0,
        "reg_head_channels": 8,
    },
    # As TransMorph (two encoders of width 24, three stages, window 3x4x3); LWCA keeps 2 blocks, 4 heads.
    "transmatch": {
        "embed_dim": 24,
        "depths": (2, 2, 4),
        "num_heads": (4, 4, 8),
        "window_size": (3, 4, 3),
        "drop_path_rate": 0.0,
        "cross_depth": 2,
        "cross_heads": 4,
    },
}

# Objective scale weights per method (one per returned flow, coarsest first). LapIRN's release scores
# only the finest active level; take the last ``active_levels`` entries.
SCALE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "voxelmorph": (1.0,),
    "lapirn": (0.0, 0.0, 1.0),
    "transmorph": (1.0,),
    "transmatch": (1.0,),
}

# The in-package baselines and the external packages' models, by name.
_ALL = {**BASELINES, **EXTERNAL}


def size_names(name: str) -> list[str]:
    """The sizes (constructor arguments) baseline ``name`` takes, e.g. for ``model.sizes`` in a config.

    Example:
        >>> size_names("lapirn")
        ['features', 'resblocks', 'range_flow', 'combination', 'active_levels']
    """
    key = look_up_option(str(name).lower(), sorted(_ALL), "baseline name")
    return [p for p in inspect.signature(_ALL[key].__init__).parameters if p not in ("self", "shape")]


def build_baseline(name: str, shape: Sequence[int], **sizes: Any) -> nn.Module:
    """Build baseline ``name`` for input ``shape`` with the published configuration, overridden by ``sizes``.

    Args:
        name: ``voxelmorph``, ``lapirn``, ``transmorph`` or ``transmatch`` (case-insensitive), or
            ``voxelmorph-package`` (the voxelmorph PyPI package's model; needs that package).
        shape: Input shape (D, H, W); each side divisible by the model's stride (VoxelMorph 16,
            LapIRN 8, TransMorph/TransMatch patch x 2^(stages-1): 32 published, 16 at CPU scale).
        **sizes: Constructor arguments to override, e.g. ``**CPU_SCALING[name]``.

    Example:
        >>> build_baseline("lapirn", (32, 32, 32), features=8).active_levels
        3
    """
    key = look_up_option(str(name).lower(), sorted(_ALL), "baseline name")
    allowed = size_names(key)
    unknown = sorted(set(sizes) - set(allowed))
    if unknown:
        raise ValueError(f"{key} has no size(s) {unknown}; it accepts {allowed}")
    return _ALL[key](shape, **sizes)


__all__ = [
    "BASELINES",
    "CPU_SCALING",
    "EXTERNAL",
    "PUBLISHED",
    "SCALE_WEIGHTS",
    "LapIRN",
    "RegistrationNetwork",
    "TransMatch",
    "TransMorph",
    "VoxelMorph",
    "VoxelMorphPackage",
    "build_baseline",
    "size_names",
]
