"""The in-memory unit of every dataset: one image with its label map and voxel-to-world affine."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Volume:
    """One subject: an intensity image, its integer label map and its geometry.

    Args:
        image: ``(1, D, H, W)`` float32 intensities in ``[0, 1]``.
        labels: ``(1, D, H, W)`` int64 label map (0 is background).
        affine: ``(4, 4)`` float64 voxel-index-to-world (mm) matrix, as in NIfTI.
        name: identifier used in error messages and in the pairs handed to the trainer.

    Raises:
        ValueError: naming ``name`` when a tensor has the wrong shape, dtype or values.

    Example:
        >>> volume = Volume(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.long),
        ...                 torch.eye(4, dtype=torch.float64), "blank")
        >>> volume.shape
        (2, 2, 2)
    """

    image: torch.Tensor
    labels: torch.Tensor
    affine: torch.Tensor
    name: str

    def __post_init__(self) -> None:
        where = f"volume {self.name!r}"
        if self.image.ndim != 4 or self.image.shape[0] != 1:
            raise ValueError(f"{where}: image must be (1, D, H, W), got {tuple(self.image.shape)}")
        if self.image.dtype != torch.float32:
            raise ValueError(f"{where}: image must be float32, got {self.image.dtype}; convert it with .float()")
        if not torch.isfinite(self.image).all():
            raise ValueError(f"{where}: image holds NaN or infinite values")
        if self.image.min() < 0 or self.image.max() > 1:
            raise ValueError(f"{where}: image must lie in [0, 1], got [{self.image.min():.4g}, {self.image.max():.4g}]; rescale it")
        if self.labels.dtype != torch.int64:
            raise ValueError(f"{where}: labels must be int64, got {self.labels.dtype}; round and cast with .long()")
        if self.labels.shape != self.image.shape:
            raise ValueError(f"{where}: labels {tuple(self.labels.shape)} and image {tuple(self.image.shape)} must have the same shape")
        if self.affine.shape != (4, 4) or self.affine.dtype != torch.float64:
            raise ValueError(f"{where}: affine must be a (4, 4) float64 tensor, got {tuple(self.affine.shape)} {self.affine.dtype}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(D, H, W)``."""
        return tuple(self.image.shape[1:])
