"""Write preprocessed subjects into a shard folder: tar shards per split, the pair list, then the manifest.

Layout of a finished folder::

    train-000000.tar ...   training subjects, each volume stored once
    val-000000.tar ...     validation subjects, set aside from the training subjects (read by key)
    test-000000.tar ...    test subjects, which nothing in training reads
    val_pairs.json         the validation pairs: checkpoint choice and cascade chaining (see pair_list)
    test_pairs.json        the test pairs, for ``llamareg evaluate`` (absent when the set has no test split)
    manifest.json          written last and atomically: its presence marks a complete build
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import webdataset
from nibabel.affines import voxel_sizes

from llamareg.checks import look_up_option
from llamareg.atomic import write_json
from llamareg.data.shards.manifest import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, PAIR_LIST_NAMES, file_digest
from llamareg.data.pair_list import stored_path, write_pair_list
from llamareg.data.shards.sample import encode_sample

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_SHARD_MB = 128.0
# The single pair list of format version 1, which an --overwrite of such a folder removes too.
FORMAT_1_PAIR_LIST = "eval_pairs.json"
# Files a build writes; --overwrite removes exactly these (the manifest first) and nothing else.
OUTPUT_PATTERNS = (
    *(f"{split}-*.tar" for split in SPLITS),
    *PAIR_LIST_NAMES.values(),
    FORMAT_1_PAIR_LIST,
    "labels/*.nii.gz",
    "nifti/*/*.nii.gz",
)


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new build; an earlier build there is removed only with ``overwrite``.

    Raises:
        ValueError: ``out`` is a file, or already holds shards (or a manifest) and ``overwrite`` is false.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the shards")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out} cannot be created ({error.strerror}); choose a writable folder") from None
    earlier = [path for pattern in OUTPUT_PATTERNS for path in out.glob(pattern)]
    manifest = out / MANIFEST_NAME
    if not (earlier or manifest.exists()):
        return
    if not overwrite:
        raise ValueError(f"--out {out} already holds shards; pass --overwrite to replace them or choose another folder")
    # The manifest goes first: if the removal is interrupted, the folder reads as unfinished, not as whole.
    manifest.unlink(missing_ok=True)
    for path in earlier:
        path.unlink()


class ShardSetWriter:
    """Streams subjects into ``<out>/<split>-NNNNNN.tar`` shards of about ``shard_mb`` each.

    Args:
        out: The shard folder (created; see :func:`prepare_output` for an existing one).
        shard_mb: Target shard size in MB; a shard closes once it reaches it, so it may exceed it by one volume.
        overwrite: Replace an earlier build in ``out``.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> writer = ShardSetWriter(out)
        >>> splits = [("a", "train"), ("b", "train"), ("c", "val"), ("d", "val"), ("e", "test"), ("f", "test")]
        >>> for key, split in splits:
        ...     writer.add(key, split, np.zeros((16, 16, 16), np.float32), np.zeros((16, 16, 16), np.int64), np.eye(4),
        ...                {"image": out / f"{key}.nii.gz", "labels": out / f"{key}-labels.nii.gz"})
        >>> def pair(moving, fixed):
        ...     return {"moving": out / f"{moving}.nii.gz", "fixed": out / f"{fixed}.nii.gz",
        ...             "moving_labels": out / f"{moving}-labels.nii.gz", "fixed_labels": out / f"{fixed}-labels.nii.gz"}
        >>> writer.finish([pair("c", "d")], [pair("e", "f"), pair("f", "e")], {"layout": "example"})["counts"]
        {'subjects': 6, 'train': 2, 'val': 2, 'test': 2, 'val_pairs': 1, 'test_pairs': 2, 'shards': 3, 'skipped': 0}
    """

    def __init__(self, out: str | os.PathLike, shard_mb: float = DEFAULT_SHARD_MB, overwrite: bool = False) -> None:
        if not shard_mb > 0:
            raise ValueError(f"--shard-mb must be positive, got {shard_mb}")
        self.out = Path(os.path.abspath(out))
        self.shard_bytes = shard_mb * 1e6
        self._created_out = not self.out.exists()
        prepare_output(self.out, overwrite)
        self._writers: dict[str, webdataset.ShardWriter] = {}
        self._shard_keys: dict[str, list[str]] = {}
        self.subjects: list[dict[str, Any]] = []
        self.shape: tuple[int, ...] | None = None

    def _writer(self, split: str) -> webdataset.ShardWriter:
        # Opened on first use: ShardWriter creates its first file at once, and a split may stay empty.
        if split not in self._writers:
            pattern = str(self.out).replace("%", "%%") + os.sep + f"{split}-%06d.tar"  # ShardWriter %-formats it
            self._writers[split] = webdataset.ShardWriter(pattern, maxsize=self.shard_bytes, maxcount=10**9, verbose=0, encoder=False)
        return self._writers[split]

    def add(self, key: str, split: str, image: np.ndarray, labels: np.ndarray, affine: np.ndarray, sources: dict[str, Any]) -> None:
        """Store one preprocessed subject.

        Args:
            key: Unique subject key.
            split: ``train``, ``val`` or ``test``.
            image: ``(D, H, W)`` float32 in ``[0, 1]``.
            labels: Integer label map of the image's shape.
            affine: ``(4, 4)`` voxel-to-world matrix of the stored grid.
            sources: Provenance kept in the sample's metadata and the manifest: ``image`` (path),
                ``labels`` (path or ``None``), optionally ``label_masks``, ``source_affine``, ``source_shape``.
        """
        look_up_option(split, SPLITS, "split")
        if self.shape is None:
            self.shape = tuple(image.shape)
        elif tuple(image.shape) != self.shape:
            raise ValueError(f"subject {key} has shape {tuple(image.shape)} but earlier subjects {self.shape}; all must share one")
        label_ids = sorted(int(value) for value in np.unique(labels))
        spacing = [float(size) for size in voxel_sizes(affine)]
        paths = {name: stored_path(value, self.out) if isinstance(value, (str, os.PathLike)) else value for name, value in sources.items()}
        if "label_masks" in paths:
            paths["label_masks"] = {str(label): stored_path(path, self.out) for label, path in sources["label_masks"].items()}
        meta = {"key": key, "split": split, **paths, "affine": np.asarray(affine).tolist(), "spacing_mm": spacing, "label_ids": label_ids}
        writer = self._writer(split)
        writer.write(encode_sample(key, image, labels, meta))
        shard = Path(writer.fname).name
        self._shard_keys.setdefault(shard, []).append(key)
        self.subjects.append({"key": key, "split": split, "shard": shard, **paths, "spacing_mm": spacing, "label_ids": label_ids})

    def _close_shards(self) -> None:
        for writer in self._writers.values():
            writer.close()
        # Forgotten once closed: a webdataset writer closed twice raises, as abort() after a failed finish() would.
        self._writers.clear()

    def abort(self) -> None:
        """Close the shards and remove everything this build wrote (``out`` too if the build created it),
        so that a failed build leaves no partial output and a rerun needs no ``--overwrite``."""
        self._close_shards()
        (self.out / MANIFEST_NAME).unlink(missing_ok=True)
        for path in [path for pattern in OUTPUT_PATTERNS for path in self.out.glob(pattern)]:
            path.unlink(missing_ok=True)
        for folder in (
            self.out / "labels",
            *sorted(self.out.glob("nifti/*")),
            self.out / "nifti",
            *([self.out] if self._created_out else []),
        ):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def finish(self, val_pairs: list[dict[str, Any]], test_pairs: list[dict[str, Any]] | None, details: dict[str, Any]) -> dict[str, Any]:
        """Close the shards, write the pair lists and then the manifest; returns the manifest.

        Args:
            val_pairs: ``{"fixed", "moving", "fixed_labels", "moving_labels"}`` paths; each image
                must be that of a stored validation subject.
            test_pairs: As ``val_pairs``, of stored test subjects; ``None`` for a set without a test
                split (no ``test_pairs.json`` is written).
            details: Extra manifest entries (layout, input, preprocessing, skipped inputs).

        Raises:
            ValueError: fewer than two training subjects, no validation pair, an empty test pair
                list, or a pair naming an image that is not a stored subject of its split.
        """
        self._close_shards()
        counts = {split: sum(s["split"] == split for s in self.subjects) for split in SPLITS}
        if counts["train"] < 2:
            raise ValueError(f"only {counts['train']} training subject(s) were stored; training pairs need at least 2")
        lists = {"val": val_pairs, **({} if test_pairs is None else {"test": test_pairs})}
        names = {"val": "validation", "test": "test"}
        for role, pairs in lists.items():
            if not pairs:
                raise ValueError(f"no {names[role]} pair is left; {names[role]} needs at least one (check the skipped inputs)")
            stored_images = {s[name] for s in self.subjects if s["split"] == role for name in ("image", "aligned_image") if name in s}
            for pair in pairs:
                for key in ("fixed", "moving"):
                    if stored_path(pair[key], self.out) not in stored_images:
                        raise ValueError(f"{names[role]} pair names {pair[key]}, which is not a stored {names[role]} subject")
        shards = []
        for split in SPLITS:
            for path in sorted(self.out.glob(f"{split}-*.tar")):
                size, sha256 = file_digest(path)
                keys = self._shard_keys.get(path.name, [])
                shards.append({"name": path.name, "split": split, "samples": len(keys), "bytes": size, "sha256": sha256, "keys": keys})
        for role, pairs in lists.items():
            write_pair_list(self.out / PAIR_LIST_NAMES[role], pairs)
        spacings = {tuple(s["spacing_mm"]) for s in self.subjects}
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **details,
            "shape": list(self.shape),
            # One spacing when every subject was resampled to it; per subject otherwise.
            "spacing_mm": list(spacings.pop()) if len(spacings) == 1 else None,
            "label_ids": sorted({label for s in self.subjects for label in s["label_ids"]}),
            "counts": {
                "subjects": len(self.subjects),
                **counts,
                "val_pairs": len(val_pairs),
                "test_pairs": len(test_pairs or []),
                "shards": len(shards),
                "skipped": len(details.get("skipped", [])),
            },
            "pairs": {role: PAIR_LIST_NAMES[role] for role in lists},
            "shards": shards,
            "subjects": self.subjects,
        }
        write_json(self.out / MANIFEST_NAME, manifest)
        # Atomic writes go through mkstemp, which makes owner-only files; give the JSON files the
        # shards' permissions so that whoever can read the shards can read the whole set.
        mode = stat.S_IMODE((self.out / shards[0]["name"]).stat().st_mode)
        for name in (*manifest["pairs"].values(), MANIFEST_NAME):
            (self.out / name).chmod(mode)
        logger.info(
            "wrote %d subjects (%d train, %d val, %d test) in %d shards, %d validation and %d test pairs to %s",
            len(self.subjects),
            counts["train"],
            counts["val"],
            counts["test"],
            len(shards),
            len(val_pairs),
            len(test_pairs or []),
            self.out,
        )
        return manifest
