"""Stream a shard folder into training: volumes split by rank and worker, pairs formed while reading.

Every reader (one DataLoader worker of one rank) reads its own share of the training volumes:

* with at least as many shards as readers, whole shards (``shards[reader::readers]``), so each file
  is read by one reader only;
* with fewer shards (small datasets), every shard, keeping subject ``i`` of the manifest when
  ``i % readers == reader``.

Either way the shares are disjoint and together hold every training subject. Pairs are ordered
pairs of two distinct subjects from a small pool of recently read volumes, so a volume is read once
per pass however many pairs it takes part in.
"""

from __future__ import annotations

import copy
import itertools
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from llamareg.checks import look_up_option
from llamareg.data.pair_datasets import make_pair
from llamareg.data.shards.manifest import PAIR_LIST_NAMES, REBUILD_HINT, read_manifest, verify_shard
from llamareg.data.pair_list import PAIR_KEYS, read_pair_list, resolve_path
from llamareg.data.shards.sample import decode_sample
from llamareg.data.volume import Volume

DEFAULT_POOL_SIZE = 16


def distributed_position(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world size)``: the arguments when given, else torch.distributed's when initialised, else ``(0, 1)``."""
    if rank is None and world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1
    if rank is None or world_size is None or not 0 <= rank < world_size:
        raise ValueError(f"give rank and world_size together with 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


class ShardSet:
    """A finished shard folder: its manifest, verified shards, and volumes by key.

    Each shard's size is checked every time it is opened and its SHA-256 the first time in a process.

    Raises:
        FileNotFoundError: the folder or its manifest is missing (an unfinished build).
    """

    def __init__(self, shard_dir: str | os.PathLike) -> None:
        self.directory = Path(os.path.abspath(shard_dir))
        self.manifest = read_manifest(self.directory)
        self.shape = tuple(self.manifest["shape"])
        self._checksummed: set[str] = set()

    def shards(self, split: str) -> list[dict[str, Any]]:
        return [entry for entry in self.manifest["shards"] if entry["split"] == split]

    def keys(self, split: str) -> list[str]:
        return [subject["key"] for subject in self.manifest["subjects"] if subject["split"] == split]

    def samples(self, entry: dict[str, Any], keep: set[str] | None = None) -> Iterator[tuple[Volume, dict[str, Any]]]:
        """Decoded ``(volume, metadata)`` of one shard, optionally only the subjects in ``keep``.

        Raises:
            FileNotFoundError: the shard is missing.
            ValueError: naming the shard: truncated, damaged, or holding a sample that does not match the manifest.
        """
        path = verify_shard(self.directory, entry, checksum=entry["name"] not in self._checksummed)
        self._checksummed.add(entry["name"])
        seen = 0
        with open(path, "rb") as stream:
            try:
                for raw in group_by_keys(tar_file_expander([{"url": str(path), "stream": stream}])):
                    seen += 1
                    if keep is None or raw["__key__"] in keep:
                        yield decode_sample(raw, self.shape, str(path))
            except (tarfile.TarError, EOFError, OSError) as error:
                # webdataset appends " @ <stream>" to the message; the path is named below already.
                reason = str(error.args[0]).split(" @ ")[0] if error.args else type(error).__name__
                raise ValueError(f"shard {path} cannot be read ({reason}); {REBUILD_HINT}") from None
        if seen != entry["samples"]:
            raise ValueError(f"shard {path} holds {seen} samples but the manifest says {entry['samples']}; {REBUILD_HINT}")

    def load(self, keys: Iterable[str]) -> dict[str, Volume]:
        """The volumes of ``keys`` (any split), reading only the shards that hold them.

        Raises:
            ValueError: a key that the manifest does not list.
        """
        wanted = set(keys)
        shard_of = {subject["key"]: subject["shard"] for subject in self.manifest["subjects"]}
        unknown = sorted(wanted - set(shard_of))
        if unknown:
            raise ValueError(f"{self.directory} holds no subject {unknown[0]}; see the subjects in its manifest.json")
        volumes = {}
        for entry in self.manifest["shards"]:
            if any(shard_of[key] == entry["name"] for key in wanted):
                volumes.update((volume.name, volume) for volume, _ in self.samples(entry, wanted))
        return volumes

    def subject_images(self, splits: Iterable[str]) -> dict[Path, str]:
        """``{absolute image path: key}`` of the subjects of ``splits``, paths resolved as pair lists resolve them
        (a pre-aligned subject's aligned copy, which its pair lists name, as well as its source image)."""
        wanted = set(splits)
        return {
            resolve_path(subject[name], self.directory): subject["key"]
            for subject in self.manifest["subjects"]
            if subject["split"] in wanted
            for name in ("image", "aligned_image")
            if name in subject
        }

    def pairs(self, role: str) -> list[tuple[str, str]]:
        """The ``(moving key, fixed key)`` pairs of the folder's pair list of ``role``, mapped to subjects by image path.

        Args:
            role: ``val`` (the pairs training validates on) or ``test`` (the pairs reported only).

        Raises:
            ValueError: another role, a folder without test pairs, or a pair naming an image that is
                not a subject of that split.
            FileNotFoundError: the pair list is missing.
        """
        look_up_option(role, tuple(PAIR_LIST_NAMES), "pair role")
        if role not in self.manifest["pairs"]:
            raise ValueError(
                f"{self.directory} has no {role} pairs: it was built without a {role} split (layout {self.manifest.get('layout')})"
            )
        path = self.directory / self.manifest["pairs"][role]
        by_image = self.subject_images([role])
        pairs = []
        for pair in read_pair_list(path, required=PAIR_KEYS):
            for image in (pair.moving, pair.fixed):
                if image not in by_image:
                    raise ValueError(f"{path} names {image}, which is not a {role} subject of {self.directory}/manifest.json")
            pairs.append((by_image[pair.moving], by_image[pair.fixed]))
        return pairs


def _reader_position(rank: int, world_size: int) -> tuple[int, int]:
    """This process's reader index among all readers of all ranks."""
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world_size * workers


class ShardVolumeStream(IterableDataset):
    """The volumes of one split, each reader its own share, in a shuffled order; one pass or endless.

    Args:
        shard_dir: A finished shard folder.
        split: ``train`` or ``val``.
        seed: Seed of the shard order (with ``start``, the rank and the worker).
        endless: Start a new, reshuffled pass after each pass.
        rank, world_size: This process's place among the training processes; by default
            torch.distributed's when it is initialised (at construction), else a single process.
        start: Position in the run the stream starts from (reseeds it; see :class:`ShardPairStream`).
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        split: str = "train",
        seed: int = 0,
        endless: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        start: int = 0,
    ) -> None:
        self.shard_set = ShardSet(shard_dir)
        self.split, self.seed, self.endless, self.start = split, seed, endless, start
        self.rank, self.world_size = distributed_position(rank, world_size)
        if not self.keys(0, 1):
            raise ValueError(f"{self.shard_set.directory} holds no {split} subjects")

    def share(self, reader: int, readers: int) -> tuple[list[dict[str, Any]], set[str] | None]:
        """The shards reader ``reader`` of ``readers`` opens and the keys it keeps (``None``: all of them)."""
        shards = self.shard_set.shards(self.split)
        if len(shards) >= readers:
            return shards[reader::readers], None
        return shards, set(self.shard_set.keys(self.split)[reader::readers])

    def keys(self, reader: int, readers: int) -> list[str]:
        shards, keep = self.share(reader, readers)
        return [key for entry in shards for key in entry["keys"] if keep is None or key in keep]

    def position(self) -> tuple[int, int]:
        """``(reader, readers)`` of the calling process or DataLoader worker."""
        return _reader_position(self.rank, self.world_size)

    def __iter__(self) -> Iterator[Volume]:
        reader, readers = self.position()
        shards, keep = self.share(reader, readers)
        if self.endless and not self.keys(reader, readers):
            raise ValueError(f"reader {reader} of {readers} (ranks x workers) gets no {self.split} subject; use fewer workers or ranks")
        for epoch in itertools.count():
            order = np.random.default_rng([self.seed, self.start, reader, readers, epoch]).permutation(len(shards))
            for index in order:
                for volume, _ in self.shard_set.samples(shards[index], keep):
                    yield volume
            if not self.endless:
                return


class ShardPairStream(IterableDataset):
    """Endless training pairs from the training shards, formed while reading.

    Each reader keeps a pool of up to ``pool_size`` volumes of its share. Every volume read is paired
    with a random pool member of another subject, as moving or fixed at random, then takes a random
    pool slot (or the slot of an older copy of itself). Every ordered pair of distinct training
    subjects can occur; the stream never ends, so the trainer takes as many pairs as it needs.

    A stream cannot seek, so a run resumed at position ``p`` reads :meth:`starting_at` ``(p)``: the
    same shards and rules, reseeded by ``p``. A resumed run is reproducible but sees other pairs
    than an uninterrupted run would.

    Args:
        shard_dir: A finished shard folder.
        seed: Seed of the pair sequence (``train.seed``).
        pool_size: Volumes each reader holds to draw pairs from (``data.shuffle_buffer``); larger
            mixes better and takes more memory.
        rank, world_size: As :class:`ShardVolumeStream`.
        start: Position in the run the stream starts from.

    Raises:
        ValueError: (when iterated) a reader whose share holds fewer than 2 subjects.
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        seed: int = 0,
        pool_size: int = DEFAULT_POOL_SIZE,
        rank: int | None = None,
        world_size: int | None = None,
        start: int = 0,
    ) -> None:
        if pool_size < 2:
            raise ValueError(f"pool_size (data.shuffle_buffer) must be >= 2, got {pool_size}")
        self.volumes = ShardVolumeStream(shard_dir, "train", seed, endless=True, rank=rank, world_size=world_size, start=start)
        self.pool_size = pool_size

    def starting_at(self, position: int) -> ShardPairStream:
        """The stream of a run resumed at item ``position`` (reseeded by it)."""
        resumed = copy.copy(self)
        resumed.volumes = copy.copy(self.volumes)
        resumed.volumes.start = position
        return resumed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor | str]]:
        reader, readers = self.volumes.position()
        share = self.volumes.keys(reader, readers)
        if len(share) < 2:
            raise ValueError(
                f"reader {reader} of {readers} (ranks x DataLoader workers) gets {len(share)} training subject(s) but pairs need 2; "
                "use fewer data.num_workers or ranks, or more training subjects"
            )
        rng = np.random.default_rng([self.volumes.seed, self.volumes.start, reader, readers])
        pool: list[Volume] = []
        for volume in self.volumes:
            others = [member for member in pool if member.name != volume.name]
            if others:
                other = others[rng.integers(len(others))]
                yield make_pair(volume, other) if rng.integers(2) else make_pair(other, volume)
            same = [slot for slot, member in enumerate(pool) if member.name == volume.name]
            if same:
                pool[same[0]] = volume
            elif len(pool) < self.pool_size:
                pool.append(volume)
            else:
                pool[rng.integers(len(pool))] = volume
