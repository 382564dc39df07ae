"""The files of a pair list's pairs (:mod:`llamareg.data.pair_list`): the up-front check of every file a
pair names, reading them, and the output names of the pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel
import numpy as np

from llamareg.data.pair_list import PAIR_KEYS, PairPaths
from llamareg.inference.grid import Grid, world_box
from llamareg.inference.images import NiftiVolume, check_same_grid, open_volume, read_intensities, read_labels

ROLES = {"fixed": "fixed image", "moving": "moving image", "fixed_labels": "fixed labels", "moving_labels": "moving labels"}


@dataclass(frozen=True)
class LoadedPair:
    """One pair's volumes, read and checked."""

    fixed: NiftiVolume
    moving: NiftiVolume
    fixed_labels: NiftiVolume | None
    moving_labels: NiftiVolume | None


def image_stem(path: Path) -> str:
    """A file name without its ``.nii.gz`` / ``.nii`` (or other) extension."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mgz", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def pair_names(pairs: list[PairPaths]) -> list[str]:
    """One output name per pair, ``<fixed>__<moving>`` after the files' stems; a name that several
    pairs would share gets the pair's index appended (``<fixed>__<moving>__003``).

    Example:
        >>> pair_names([PairPaths(Path("a/s1.nii.gz"), Path("s2.nii")), PairPaths(Path("s3.nii.gz"), Path("s2.nii.gz"))])
        ['s1__s2', 's3__s2']
    """
    names = [f"{image_stem(pair.fixed)}__{image_stem(pair.moving)}" for pair in pairs]
    return [f"{name}__{index:03d}" if names.count(name) > 1 else name for index, name in enumerate(names)]


def check_pair(pair: PairPaths) -> dict[str, nibabel.spatialimages.SpatialImage]:
    """Open every file of a pair and check it (exists, 3D, labels on their image's grid).

    Returns:
        The opened headers by key, to read with :func:`load_pair`.

    Raises:
        FileNotFoundError, ValueError: one line naming the bad file, or both images when their fields of
            view do not overlap in world coordinates (the warped image would be constant).
    """
    opened = {key: open_volume(getattr(pair, key), ROLES[key]) for key in PAIR_KEYS if getattr(pair, key) is not None}
    for image_key in ("fixed", "moving"):
        labels_key = f"{image_key}_labels"
        if labels_key in opened:
            check_same_grid(opened[labels_key], getattr(pair, labels_key), opened[image_key], getattr(pair, image_key), ROLES[labels_key])
    if world_box_overlap(opened) == 0:
        raise ValueError(
            f"{pair.moving} and {pair.fixed} do not overlap in world coordinates (their affines place them apart); "
            "align the moving image to the fixed one first (e.g. an affine registration)"
        )
    return opened


def world_box_overlap(opened: dict[str, nibabel.spatialimages.SpatialImage]) -> float:
    """The share of the fixed image's world bounding box that the moving image's box covers (0 to 1)."""
    (fixed_low, fixed_high), (moving_low, moving_high) = (
        world_box(Grid(tuple(opened[key].shape[:3]), np.asarray(opened[key].affine))) for key in ("fixed", "moving")
    )
    shared = np.clip(np.minimum(fixed_high, moving_high) - np.maximum(fixed_low, moving_low), 0, None)
    return float(np.prod(shared) / np.prod(fixed_high - fixed_low))


def load_pair(pair: PairPaths, opened: dict[str, nibabel.spatialimages.SpatialImage]) -> LoadedPair:
    """Read the voxels of a pair checked by :func:`check_pair`."""

    def labels(key: str) -> NiftiVolume | None:
        return read_labels(opened[key], getattr(pair, key), ROLES[key]) if key in opened else None

    return LoadedPair(
        fixed=read_intensities(opened["fixed"], pair.fixed, ROLES["fixed"]),
        moving=read_intensities(opened["moving"], pair.moving, ROLES["moving"]),
        fixed_labels=labels("fixed_labels"),
        moving_labels=labels("moving_labels"),
    )
