"""Image pyramids matching the decoder's factor-2 grids."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def image_pyramid(image: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
    """The image at 1/2^(levels-1), ..., 1/2 and full resolution, coarsest first.

    Each level is 2x2x2 average pooling of the next finer one, so voxel centres line up with
    :func:`llamareg.spatial.functional.resize_flow`'s factor-2 grids.

    Example:
        >>> [tuple(x.shape[2:]) for x in image_pyramid(torch.zeros(1, 1, 16, 16, 16))]
        [(4, 4, 4), (8, 8, 8), (16, 16, 16)]
    """
    pyramid = [image]
    for _ in range(levels - 1):
        # Pooled in fp32: the CPU has no fp16 avg_pool3d (DeepSpeed fp16 runs the model in half).
        pyramid.insert(0, F.avg_pool3d(pyramid[0].float(), 2).to(image.dtype))
    return pyramid


def pool_to(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``image`` average-pooled by repeated 2x2x2 pooling (as :func:`llamareg.spatial.pyramid.image_pyramid`) to ``size``."""
    size, dtype = tuple(size), image.dtype
    while tuple(image.shape[2:]) != size:
        if any(s < t or s % 2 for s, t in zip(image.shape[2:], size)):
            raise ValueError(f"cannot reach {size} from {tuple(image.shape[2:])} by halving")
        image = F.avg_pool3d(image.float(), 2)  # fp32: the CPU has no half-precision avg_pool3d
    return image.to(dtype)
