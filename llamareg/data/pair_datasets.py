"""Registration pairs formed on the fly from any list of volumes (each volume is stored once).

Items are dicts that torch's default ``collate_fn`` batches::

    {"moving": (1, D, H, W) float32, "fixed": (1, D, H, W) float32,
     "moving_labels": (1, D, H, W) int64, "fixed_labels": (1, D, H, W) int64,
     "moving_name": str, "fixed_name": str}
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from llamareg.data.synthetic import seeded_generator
from llamareg.data.volume import Volume


def _check_volumes(volumes: Sequence[Volume]) -> list[Volume]:
    volumes = list(volumes)
    if len(volumes) < 2:
        raise ValueError(f"pairs need at least 2 volumes, got {len(volumes)}")
    if not all(isinstance(volume, Volume) for volume in volumes):
        raise ValueError("volumes must all be llamareg.data.volume.Volume instances")
    shapes = {volume.shape for volume in volumes}
    if len(shapes) != 1:
        raise ValueError(f"volumes must share one shape to be batched, got {sorted(shapes)}; resample them first")
    return volumes


def make_pair(moving: Volume, fixed: Volume) -> dict[str, torch.Tensor | str]:
    """The item dict for one ordered pair (tensors are the volumes' own, not copies)."""
    return {
        "moving": moving.image,
        "fixed": fixed.image,
        "moving_labels": moving.labels,
        "fixed_labels": fixed.labels,
        "moving_name": moving.name,
        "fixed_name": fixed.name,
    }


class TrainingPairs(Dataset):
    """``length`` random ordered pairs of distinct volumes; item ``i`` depends only on ``(seed, i)``.

    No state is kept between items, so a run resumed at iteration ``i`` (or a DataLoader worker)
    sees exactly the pairs an uninterrupted run would.

    Args:
        volumes: at least two volumes of one shape.
        seed: seed of the pair sequence (>= 0).
        length: number of items (e.g. iterations x batch size).

    Example:
        >>> pairs = TrainingPairs(volumes, seed=0, length=1000)  # doctest: +SKIP
        >>> pairs[5]["moving_name"] == TrainingPairs(volumes, seed=0, length=10)[5]["moving_name"]  # doctest: +SKIP
        True
    """

    def __init__(self, volumes: Sequence[Volume], seed: int, length: int) -> None:
        self.volumes = _check_volumes(volumes)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def pair_indices(self, index: int) -> tuple[int, int]:
        """``(moving, fixed)`` volume indices of item ``index``: uniform over ordered distinct pairs."""
        if not -self.length <= index < self.length:
            raise IndexError(f"item {index} is out of range for {self.length} training pairs")
        index %= self.length
        generator = seeded_generator("pairs", self.seed, index)
        count = len(self.volumes)
        moving = int(torch.randint(count, (), generator=generator))
        # Draw the fixed volume among the other count - 1 and skip over the moving one.
        fixed = int(torch.randint(count - 1, (), generator=generator))
        return moving, fixed + (fixed >= moving)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        moving, fixed = self.pair_indices(index)
        return make_pair(self.volumes[moving], self.volumes[fixed])


class EvaluationPairs(Dataset):
    """A fixed list of ``(moving, fixed)`` volume index pairs, e.g. from :func:`consecutive_pairs`.

    Args:
        volumes: at least two volumes of one shape.
        pairs: ``(moving, fixed)`` indices into ``volumes``, each pair of distinct volumes.

    Example:
        >>> evaluation = EvaluationPairs(val_volumes, consecutive_pairs(len(val_volumes)))  # doctest: +SKIP
    """

    def __init__(self, volumes: Sequence[Volume], pairs: Sequence[tuple[int, int]]) -> None:
        self.volumes = _check_volumes(volumes)
        self.pairs = [(int(moving), int(fixed)) for moving, fixed in pairs]
        if not self.pairs:
            raise ValueError("pairs must list at least one (moving, fixed) pair")
        count = len(self.volumes)
        for moving, fixed in self.pairs:
            if not (0 <= moving < count and 0 <= fixed < count) or moving == fixed:
                raise ValueError(f"pair ({moving}, {fixed}) must index two distinct volumes among {count}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        moving, fixed = self.pairs[index]
        return make_pair(self.volumes[moving], self.volumes[fixed])


def consecutive_pairs(num_volumes: int, num_pairs: int | None = None) -> list[tuple[int, int]]:
    """A fixed evaluation pair list: ``(i, i + 1)`` around the ring, then ``(i, i + 2)``, and so on.

    Every volume is moving once and fixed once per round, and no ordered pair repeats.

    Args:
        num_volumes: number of volumes (>= 2).
        num_pairs: pairs wanted, at most ``num_volumes * (num_volumes - 1)`` (default ``num_volumes``).

    Returns:
        ``num_pairs`` ``(moving, fixed)`` index pairs.

    Example:
        >>> consecutive_pairs(3)
        [(0, 1), (1, 2), (2, 0)]
        >>> consecutive_pairs(3, 4)
        [(0, 1), (1, 2), (2, 0), (0, 2)]
    """
    if isinstance(num_volumes, bool) or not isinstance(num_volumes, int) or num_volumes < 2:
        raise ValueError(f"num_volumes must be an integer >= 2, got {num_volumes!r}")
    num_pairs = num_volumes if num_pairs is None else num_pairs
    most = num_volumes * (num_volumes - 1)
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or not 1 <= num_pairs <= most:
        raise ValueError(f"num_pairs must be between 1 and {most} for {num_volumes} volumes, got {num_pairs!r}")
    return [(k % num_volumes, (k % num_volumes + 1 + k // num_volumes) % num_volumes) for k in range(num_pairs)]
