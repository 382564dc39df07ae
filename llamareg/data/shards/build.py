"""Build a shard folder from a discovered NIfTI dataset: split, read, preprocess, write, report bad inputs.

Training pairs are not stored: each volume is stored once and pairs are formed while reading. Only
the fixed evaluation pairs are written, as ``eval_pairs.json``. A dataset without its own pairs gets
a default list over held-out subjects.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import nibabel

from llamareg.data.layouts import DiscoveredDataset, SubjectRecord
from llamareg.data.nifti import read_subject, write_nifti
from llamareg.data.pairs import consecutive_pairs
from llamareg.data.preprocess import Preprocessing, fitting_shape, planned_shape, preprocess_subject
from llamareg.data.shards.pair_list import read_pair_list
from llamareg.data.shards.writer import DEFAULT_SHARD_MB, ShardSetWriter

logger = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.1
MERGED_LABELS_FOLDER = "labels"


@dataclasses.dataclass
class SplitPlan:
    """Which subjects train, which are held out, and the evaluation pairs as ``(moving key, fixed key)``."""

    train: list[SubjectRecord]
    val: list[SubjectRecord]
    pairs: list[tuple[str, str]] | None  # None: consecutive pairs over the surviving validation subjects
    num_pairs: int | None = None


def apply_pair_list(dataset: DiscoveredDataset, path: str | os.PathLike) -> DiscoveredDataset:
    """``dataset`` with the evaluation pairs of a pair-list file (``--eval-pairs``) instead of its own.

    Pairs are matched to subjects by image path; the subjects they name become the validation
    subjects, every other subject trains. The label paths of the list are not read: each subject's
    own labels are stored.

    Raises:
        ValueError: a pair names an image that is not one of the dataset's.
    """
    by_image = {subject.image: subject for subject in dataset.subjects}
    pairs = []
    for pair in read_pair_list(path):
        for role in ("moving", "fixed"):
            if pair[role] not in by_image:
                raise ValueError(f"--eval-pairs {path} names {pair[role]}, which is not an image of the dataset")
        pairs.append((by_image[pair["moving"]].key, by_image[pair["fixed"]].key))
    named = {key for pair in pairs for key in pair}
    subjects = [dataclasses.replace(s, split="val" if s.key in named else "train") for s in dataset.subjects]
    return DiscoveredDataset(subjects, pairs)


def default_val_subjects(count: int) -> int:
    """Held-out subjects when a dataset names none: 10 %, at least 2.

    Example:
        >>> default_val_subjects(200), default_val_subjects(8)
        (20, 2)
    """
    return max(2, round(count * DEFAULT_VAL_FRACTION))


def plan_split(dataset: DiscoveredDataset, val_subjects: int | None = None, val_pairs: int | None = None) -> SplitPlan:
    """Split the subjects: the dataset's evaluation pairs or ``split`` column if it has them, else the last
    ``val_subjects`` keys (sorted) held out, with ``val_pairs`` consecutive pairs among them.

    Raises:
        ValueError: options that do not fit the dataset, or unlabelled validation subjects.
    """
    subjects = dataset.subjects
    if dataset.eval_pairs is not None:
        if val_subjects is not None or val_pairs is not None:
            raise ValueError("--val-subjects/--val-pairs apply only to datasets without evaluation pairs; this one has them")
        named = {key for pair in dataset.eval_pairs for key in pair}
        plan = SplitPlan([s for s in subjects if s.key not in named], [s for s in subjects if s.key in named], list(dataset.eval_pairs))
    elif any(s.split == "val" for s in subjects):
        if val_subjects is not None:
            raise ValueError("--val-subjects cannot be combined with a dataset whose split column names validation subjects")
        plan = SplitPlan([s for s in subjects if s.split != "val"], [s for s in subjects if s.split == "val"], None, val_pairs)
    else:
        count = default_val_subjects(len(subjects)) if val_subjects is None else val_subjects
        if not 2 <= count <= len(subjects) - 2:
            raise ValueError(f"--val-subjects must be between 2 and {len(subjects) - 2} for {len(subjects)} subjects, got {count}")
        ordered = sorted(subjects, key=lambda s: s.key)
        plan = SplitPlan(ordered[:-count], ordered[-count:], None, val_pairs)
    unlabelled = [s.key for s in plan.val if not s.labelled]
    if unlabelled:
        raise ValueError(f"validation subjects {', '.join(unlabelled)} have no labels; validation Dice needs them - label them or hold out others")
    if len(plan.val) < 2:
        raise ValueError(f"{len(plan.val)} validation subject(s); evaluation pairs need at least 2")
    return plan


def _report(record: SubjectRecord, error: Exception, skip_bad: bool, skipped: list[dict[str, str]]) -> None:
    """Log a bad input by name and skip it, or stop the build with the error."""
    message = str(error) if any(str(path) in str(error) for path in record.sources) else f"{record.image}: {error}"
    if not skip_bad:
        raise (FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError)(message) from None
    logger.warning("skipping subject %s: %s", record.key, message)
    skipped.append({"key": record.key, "input": str(record.image), "reason": message})


def _default_shape(records: list[SubjectRecord], options: Preprocessing, skip_bad: bool, skipped: list[dict[str, str]]) -> tuple[int, int, int]:
    """The smallest shape divisible by 16 holding every subject after reorientation and resampling (headers only)."""
    shapes = []
    for record in records:
        try:
            if not record.image.is_file():
                raise FileNotFoundError(f"{record.image} does not exist; check the dataset folder or the paths in its list")
            try:
                header = nibabel.load(record.image)
            except Exception as error:  # a damaged header: nibabel raises several types
                raise ValueError(f"{record.image} is not a readable NIfTI file ({error})") from None
            if len(header.shape) < 3 or any(size < 2 for size in header.shape[:3]):
                raise ValueError(f"{record.image} has shape {tuple(header.shape)}, not a 3D volume; give 3D images (2D slices are not registered)")
            shapes.append(planned_shape(header.shape[:3], header.affine, options))
        except (FileNotFoundError, ValueError) as error:
            _report(record, error, skip_bad, skipped)
    if not shapes:
        raise ValueError("no readable subject is left to take the volume shape from")
    return fitting_shape(shapes)


def build_shards(
    dataset: DiscoveredDataset,
    out: str | os.PathLike,
    options: Preprocessing = Preprocessing(),
    *,
    val_subjects: int | None = None,
    val_pairs: int | None = None,
    shard_mb: float = DEFAULT_SHARD_MB,
    skip_bad: bool = False,
    overwrite: bool = False,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Preprocess every subject of ``dataset`` into shards in ``out``; returns the manifest.

    Args:
        dataset: From :func:`llamareg.data.layouts.discover`.
        out: The shard folder.
        options: Preprocessing; without a shape, the smallest one divisible by 16 that holds every subject.
        val_subjects: Held out when the dataset names no validation subjects (default 10 %, at least 2).
        val_pairs: Consecutive evaluation pairs among the held-out subjects (default: as many as subjects).
        shard_mb: Target shard size in MB.
        skip_bad: Log and skip an unreadable or invalid input instead of stopping.
        overwrite: Replace an earlier build in ``out``.
        details: Extra manifest entries (e.g. layout and input).

    Raises:
        FileNotFoundError, ValueError: a bad input (without ``skip_bad``), or too few subjects or
            pairs left; each message names the file or option.
    """
    plan = plan_split(dataset, val_subjects, val_pairs)
    skipped: list[dict[str, str]] = []
    if options.shape is None:
        options = dataclasses.replace(options, shape=_default_shape(plan.train + plan.val, options, skip_bad, skipped))
        logger.info("volume shape %s (smallest divisible by 16 holding every subject)", "x".join(map(str, options.shape)))
    if any(record.labelled for record in dataset.subjects):
        # In a labelled dataset a subject without labels is a missing file, not an unlabelled subject.
        for record in plan.train + plan.val:
            if not record.labelled and record.key not in {entry["key"] for entry in skipped}:
                _report(record, FileNotFoundError(f"{record.image} has no label map, though other subjects have one; add it, "
                                                  "or pass --skip-bad to leave the subject out"), skip_bad, skipped)
    writer = ShardSetWriter(out, shard_mb=shard_mb, overwrite=overwrite)
    try:
        return _write(writer, plan, options, skip_bad, skipped, details)
    except BaseException:
        writer.abort()
        raise


def _write(writer: ShardSetWriter, plan: SplitPlan, options: Preprocessing, skip_bad: bool, skipped: list[dict[str, str]],
           details: dict[str, Any] | None) -> dict[str, Any]:
    bad = {entry["key"] for entry in skipped}
    label_files: dict[str, Path] = {}
    records = [(record, "train") for record in plan.train] + [(record, "val") for record in plan.val]
    for number, (record, split) in enumerate(records, start=1):
        if record.key in bad:
            continue
        try:
            image, labels, affine = read_subject(record.image, record.labels, record.label_masks)
            stored = preprocess_subject(image, labels, affine, options)
        except (ValueError, FileNotFoundError) as error:
            _report(record, error, skip_bad, skipped)
            bad.add(record.key)
            continue
        if split == "val":
            # Masks merged into one map: llamareg evaluate reads a single label file per volume.
            label_files[record.key] = record.labels or write_nifti(writer.out / MERGED_LABELS_FOLDER / f"{record.key}.nii.gz", labels, affine)
        sources = {"image": record.image, "labels": record.labels, "source_affine": affine.tolist(), "source_shape": list(image.shape)}
        if record.label_masks:
            sources["label_masks"] = record.label_masks
        writer.add(record.key, split, *stored, sources)
        logger.info("[%d/%d] %s (%s)", number, len(records), record.key, split)
    pairs = _surviving_pairs(plan, bad)
    by_key = {record.key: record for record in plan.val}
    eval_pairs = [
        {"moving": by_key[moving].image, "fixed": by_key[fixed].image,
         "moving_labels": label_files[moving], "fixed_labels": label_files[fixed]}
        for moving, fixed in pairs
    ]
    if skipped:
        logger.warning("skipped %d bad input(s): %s", len(skipped), ", ".join(entry["input"] for entry in skipped))
    return writer.finish(eval_pairs, {**(details or {}), "preprocessing": options.to_dict(), "skipped": skipped})


def _surviving_pairs(plan: SplitPlan, bad: set[str]) -> list[tuple[str, str]]:
    """The evaluation pairs whose two subjects were both stored."""
    if plan.pairs is None:
        kept = [record.key for record in plan.val if record.key not in bad]
        if len(kept) < 2:
            raise ValueError(f"{len(kept)} validation subject(s) are left after skipping bad inputs; evaluation pairs need 2")
        count = plan.num_pairs or len(kept)
        most = len(kept) * (len(kept) - 1)
        if not 1 <= count <= most:
            raise ValueError(f"--val-pairs must be between 1 and {most} for {len(kept)} validation subjects, got {count}")
        return [(kept[moving], kept[fixed]) for moving, fixed in consecutive_pairs(len(kept), count)]
    kept = [(moving, fixed) for moving, fixed in plan.pairs if moving not in bad and fixed not in bad]
    if len(kept) < len(plan.pairs):
        logger.warning("dropped %d evaluation pair(s) naming skipped subjects", len(plan.pairs) - len(kept))
    return kept
