"""Build a shard folder from a discovered NIfTI dataset: split, read, preprocess, write, report bad inputs.

Subjects take one of three roles: ``train``; ``val``, set aside from the training subjects, whose
pairs (``val_pairs.json``) training validates on to choose its checkpoints; and ``test``, the held-out
subjects whose pairs (``test_pairs.json``) are reported only. Training pairs are not stored: each
volume is stored once and pairs are formed while reading.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import nibabel
import numpy as np

from llamareg.data.layouts import DiscoveredDataset, SubjectRecord
from llamareg.data.nifti import read_subject, write_nifti
from llamareg.data.pair_datasets import consecutive_pairs
from llamareg.data.preprocess import Preprocessing, fitting_shape, planned_shape, preprocess_subject
from llamareg.data.pair_list import PAIR_KEYS, read_pair_list
from llamareg.data.shards.writer import DEFAULT_SHARD_MB, ShardSetWriter

logger = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.1
MERGED_LABELS_FOLDER = "labels"
ALIGNED_FOLDER = "aligned"  # pre-aligned validation and test volumes, which their pair lists name


class Aligner(Protocol):
    """A pre-alignment of each subject onto one reference grid (``shape``, ``affine``), see :func:`build_shards`."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __call__(self, image: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]: ...


ROLE_NAMES = {"val": "validation", "test": "test"}


@dataclasses.dataclass
class SplitPlan:
    """Which subjects train, validate and test, and how their pairs are formed.

    Attributes:
        train, val, test: The subjects of each split.
        test_pairs: The ``(moving key, fixed key)`` test pairs the dataset fixes, or ``None``:
            consecutive pairs over the surviving test subjects.
        num_val_pairs, num_test_pairs: Consecutive pairs to form (``None``: one per subject).
    """

    train: list[SubjectRecord]
    val: list[SubjectRecord]
    test: list[SubjectRecord]
    test_pairs: list[tuple[str, str]] | None
    num_val_pairs: int | None = None
    num_test_pairs: int | None = None


def apply_pair_list(dataset: DiscoveredDataset, path: str | os.PathLike) -> DiscoveredDataset:
    """``dataset`` with the test pairs of a pair-list file (``--test-pairs``) instead of its own.

    Pairs are matched to subjects by image path; the subjects they name become the test subjects.
    Subjects the dataset marked ``test`` lose that mark; ``train`` and ``val`` marks stay. The label
    paths of the list are not read: each subject's own labels are stored.

    Raises:
        ValueError: a pair names an image that is not one of the dataset's.
    """
    by_image = {subject.image: subject for subject in dataset.subjects}
    pairs = []
    for pair in read_pair_list(path, required=PAIR_KEYS):
        for image in (pair.moving, pair.fixed):
            if image not in by_image:
                raise ValueError(f"--test-pairs {path} names {image}, which is not an image of the dataset")
        pairs.append((by_image[pair.moving].key, by_image[pair.fixed].key))
    named = {key for pair in pairs for key in pair}
    subjects = [
        dataclasses.replace(s, split="test" if s.key in named else None if s.split == "test" else s.split) for s in dataset.subjects
    ]
    return DiscoveredDataset(subjects, pairs)


def default_val_subjects(count: int) -> int:
    """Subjects set aside from ``count``, for validation (and for testing when a dataset names no test
    subjects): 10 %, at least 2.

    Example:
        >>> default_val_subjects(200), default_val_subjects(8)
        (20, 2)
    """
    return max(2, round(count * DEFAULT_VAL_FRACTION))


def _by_key(subjects: list[SubjectRecord]) -> list[SubjectRecord]:
    return sorted(subjects, key=lambda s: s.key)


def plan_split(
    dataset: DiscoveredDataset,
    test_subjects: int | None = None,
    num_test_pairs: int | None = None,
    val_subjects: int | None = None,
    num_val_pairs: int | None = None,
) -> SplitPlan:
    """Split the subjects into train, validation and test.

    Test: the subjects of the dataset's own test pairs (learn2reg ``registration_val``, ``--test-pairs``)
    or of its ``split`` column, else the last ``test_subjects`` keys (sorted) of the subjects the
    column does not mark ``val``. Validation: the subjects the ``split`` column marks ``val``, else
    the last ``val_subjects`` keys of the labelled subjects left to train. Defaults:
    :func:`default_val_subjects` of the subjects they are taken from. A split the column names is
    taken as it stands; one it does not is set aside as for a dataset without a column.

    Raises:
        ValueError: options that do not fit the dataset (naming the option), or unlabelled
            validation or test subjects.
    """
    subjects = dataset.subjects
    marked_val = [s for s in subjects if s.split == "val"]
    if dataset.test_pairs is not None:
        if test_subjects is not None or num_test_pairs is not None:
            raise ValueError(
                "--test-subjects/--num-test-pairs apply only to datasets without their own test pairs; this one has them "
                "(learn2reg registration_val or --test-pairs)"
            )
        named = {key for pair in dataset.test_pairs for key in pair}
        test = [s for s in subjects if s.key in named]
    elif any(s.split == "test" for s in subjects):
        if test_subjects is not None:
            raise ValueError("--test-subjects cannot be combined with a dataset whose split column marks test subjects")
        test = [s for s in subjects if s.split == "test"]
    else:
        pool = [s for s in subjects if s.split != "val"]
        keep, kept = (2, "2 to train") if marked_val else (4, "2 to validate and 2 to train")
        count = default_val_subjects(len(pool)) if test_subjects is None else test_subjects
        most = len(pool) - keep
        if most < 2:
            raise ValueError(
                f"{len(pool)} subjects are too few to hold out 2 test subjects (--test-subjects) and keep {kept}; add subjects"
            )
        if not 2 <= count <= most:
            raise ValueError(f"--test-subjects must be between 2 and {most} for {len(pool)} subjects ({kept} must remain), got {count}")
        test = _by_key(pool)[-count:]
    test_keys = {s.key for s in test}
    rest = [s for s in subjects if s.key not in test_keys]
    if any(s.split == "val" for s in rest):
        if val_subjects is not None:
            raise ValueError("--val-subjects cannot be combined with a dataset whose split column marks validation subjects")
        val = [s for s in rest if s.split == "val"]
    else:
        labelled = _by_key([s for s in rest if s.labelled])
        count = default_val_subjects(len(rest)) if val_subjects is None else val_subjects
        most = min(len(labelled), len(rest) - 2)
        if most < 2:
            raise ValueError(
                f"{len(rest)} training subjects ({len(labelled)} labelled) are too few to set 2 labelled ones aside "
                "for validation (--val-subjects) and keep 2 to train; add subjects"
            )
        if not 2 <= count <= most:
            raise ValueError(
                f"--val-subjects must be between 2 and {most} for {len(rest)} training subjects ({len(labelled)} labelled; "
                f"2 must remain to train), got {count}"
            )
        val = labelled[-count:]
    val_keys = {s.key for s in val}
    plan = SplitPlan(
        [s for s in rest if s.key not in val_keys],
        val,
        test,
        None if dataset.test_pairs is None else list(dataset.test_pairs),
        num_val_pairs,
        num_test_pairs,
    )
    for role, held_out in (("val", plan.val), ("test", plan.test)):
        name = ROLE_NAMES[role]
        unlabelled = [s.key for s in held_out if not s.labelled]
        if unlabelled:
            raise ValueError(
                f"{name} subjects {', '.join(unlabelled)} have no labels; {name} Dice needs them - label them or set others aside"
            )
        if len(held_out) < 2:
            raise ValueError(f"{len(held_out)} {name} subject(s); {name} pairs need at least 2")
    if len(plan.train) < 2:
        raise ValueError(f"{len(plan.train)} training subject(s) are left after the validation and test subjects; training pairs need 2")
    # Checked again after bad inputs are skipped; here so that a wrong count stops the build before any reading.
    _check_pair_count("val", num_val_pairs, len(plan.val))
    if plan.test_pairs is None:
        _check_pair_count("test", num_test_pairs, len(plan.test))
    return plan


def _report(record: SubjectRecord, error: Exception, skip_bad: bool, skipped: list[dict[str, str]]) -> None:
    """Log a bad input by name and skip it, or stop the build with the error."""
    message = str(error) if any(str(path) in str(error) for path in record.sources) else f"{record.image}: {error}"
    if not skip_bad:
        raise (FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError)(message) from None
    logger.warning("skipping subject %s: %s", record.key, message)
    skipped.append({"key": record.key, "input": str(record.image), "reason": message})


def _default_shape(
    records: list[SubjectRecord], options: Preprocessing, skip_bad: bool, skipped: list[dict[str, str]], align: Aligner | None = None
) -> tuple[int, int, int]:
    """The smallest shape divisible by 16 holding every subject after reorientation and resampling (headers only);
    pre-aligned subjects all lie on the aligner's reference grid."""
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
                raise ValueError(
                    f"{record.image} has shape {tuple(header.shape)}, not a 3D volume; give 3D images (2D slices are not registered)"
                )
            shapes.append(planned_shape(*((align.shape, align.affine) if align else (header.shape[:3], header.affine)), options))
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
    test_subjects: int | None = None,
    num_test_pairs: int | None = None,
    val_subjects: int | None = None,
    num_val_pairs: int | None = None,
    shard_mb: float = DEFAULT_SHARD_MB,
    skip_bad: bool = False,
    overwrite: bool = False,
    details: dict[str, Any] | None = None,
    align: Aligner | None = None,
) -> dict[str, Any]:
    """Preprocess every subject of ``dataset`` into shards in ``out``; returns the manifest.

    Args:
        dataset: From :func:`llamareg.data.layouts.discover`.
        out: The shard folder.
        options: Preprocessing; without a shape, the smallest one divisible by 16 that holds every subject.
        test_subjects: Held out for testing when the dataset names no test subjects (default 10 %, at least 2).
        num_test_pairs: Consecutive test pairs among them (default: one per test subject).
        val_subjects: Set aside from the training subjects for validation when the dataset names none
            (default 10 % of them, at least 2).
        num_val_pairs: Consecutive validation pairs among them (default: one per validation subject).
        shard_mb: Target shard size in MB.
        skip_bad: Log and skip an unreadable or invalid input instead of stopping.
        overwrite: Replace an earlier build in ``out``.
        details: Extra manifest entries (e.g. layout and input).
        align: Pre-alignment applied to every subject as read, before preprocessing (e.g.
            :class:`llamareg.inference.affine.SubjectAligner`: an affine registration to a reference
            image, resampling each subject onto the reference's grid); its record of each subject is
            kept in the manifest's ``sources``.

    Raises:
        FileNotFoundError, ValueError: a bad input (without ``skip_bad``), or too few subjects or
            pairs left; each message names the file or option.
    """
    plan = plan_split(dataset, test_subjects, num_test_pairs, val_subjects, num_val_pairs)
    skipped: list[dict[str, str]] = []
    records = plan.train + plan.val + plan.test
    if options.shape is None:
        options = dataclasses.replace(options, shape=_default_shape(records, options, skip_bad, skipped, align))
        logger.info("volume shape %s (smallest divisible by 16 holding every subject)", "x".join(map(str, options.shape)))
    if any(record.labelled for record in dataset.subjects):
        # In a labelled dataset a subject without labels is a missing file, not an unlabelled subject.
        for record in records:
            if not record.labelled and record.key not in {entry["key"] for entry in skipped}:
                _report(
                    record,
                    FileNotFoundError(
                        f"{record.image} has no label map, though other subjects have one; add it, "
                        "or pass --skip-bad to leave the subject out"
                    ),
                    skip_bad,
                    skipped,
                )
    writer = ShardSetWriter(out, shard_mb=shard_mb, overwrite=overwrite)
    try:
        return _write(writer, plan, options, skip_bad, skipped, details, align)
    except BaseException:
        writer.abort()
        raise


def _write(
    writer: ShardSetWriter,
    plan: SplitPlan,
    options: Preprocessing,
    skip_bad: bool,
    skipped: list[dict[str, str]],
    details: dict[str, Any] | None,
    align: Aligner | None,
) -> dict[str, Any]:
    bad = {entry["key"] for entry in skipped}
    label_files: dict[str, Path] = {}
    images: dict[str, Path] = {}
    records = [(record, split) for split in ("train", "val", "test") for record in getattr(plan, split)]
    for number, (record, split) in enumerate(records, start=1):
        if record.key in bad:
            continue
        try:
            image, labels, affine = read_subject(record.image, record.labels, record.label_masks)
            source_affine, source_shape = affine, image.shape
            alignment = None
            if align is not None:
                image, labels, affine, alignment = align(image, labels, affine)
            stored = preprocess_subject(image, labels, affine, options)
        except (ValueError, FileNotFoundError) as error:
            _report(record, error, skip_bad, skipped)
            bad.add(record.key)
            continue
        if split != "train" and alignment is not None:  # evaluation must see the volumes the model was trained on
            images[record.key] = write_nifti(writer.out / ALIGNED_FOLDER / f"{record.key}.nii.gz", image, affine)
            label_files[record.key] = write_nifti(writer.out / ALIGNED_FOLDER / f"{record.key}_labels.nii.gz", labels, affine)
        elif split != "train":
            images[record.key] = record.image
            # Masks merged into one map: a pair list (llamareg evaluate) names a single label file per volume.
            label_files[record.key] = record.labels or write_nifti(
                writer.out / MERGED_LABELS_FOLDER / f"{record.key}.nii.gz", labels, affine
            )
        sources = {
            "image": record.image,
            "labels": record.labels,
            "source_affine": source_affine.tolist(),
            "source_shape": list(source_shape),
        }
        if alignment is not None:
            sources["prealignment"] = alignment
            if split != "train":
                sources["aligned_image"] = images[record.key]
        if record.label_masks:
            sources["label_masks"] = record.label_masks
        writer.add(record.key, split, *stored, sources)
        logger.info("[%d/%d] %s (%s)", number, len(records), record.key, split)

    def pair_list(pairs: list[tuple[str, str]]) -> list[dict[str, Path]]:
        return [
            {"moving": images[moving], "fixed": images[fixed], "moving_labels": label_files[moving], "fixed_labels": label_files[fixed]}
            for moving, fixed in pairs
        ]

    val_pairs = _surviving_pairs("val", plan.val, None, plan.num_val_pairs, bad)
    test_pairs = _surviving_pairs("test", plan.test, plan.test_pairs, plan.num_test_pairs, bad)
    if skipped:
        logger.warning("skipped %d bad input(s): %s", len(skipped), ", ".join(entry["input"] for entry in skipped))
    return writer.finish(
        pair_list(val_pairs), pair_list(test_pairs), {**(details or {}), "preprocessing": options.to_dict(), "skipped": skipped}
    )


def _check_pair_count(role: str, count: int | None, subjects: int) -> int:
    """The number of consecutive pairs to form among ``subjects`` (``count``, default one per subject).

    Raises:
        ValueError: naming ``--num-val-pairs`` or ``--num-test-pairs``: not between 1 and the ordered pairs there are.
    """
    count = subjects if count is None else count
    most = subjects * (subjects - 1)
    if not 1 <= count <= most:
        raise ValueError(f"--num-{role}-pairs must be between 1 and {most} for {subjects} {ROLE_NAMES[role]} subjects, got {count}")
    return count


def _surviving_pairs(
    role: str, subjects: list[SubjectRecord], fixed_pairs: list[tuple[str, str]] | None, count: int | None, bad: set[str]
) -> list[tuple[str, str]]:
    """The ``role`` pairs whose two subjects were both stored: the dataset's (``fixed_pairs``) or consecutive ones."""
    if fixed_pairs is None:
        kept = [record.key for record in subjects if record.key not in bad]
        if len(kept) < 2:
            raise ValueError(
                f"{len(kept)} {ROLE_NAMES[role]} subject(s) are left after skipping bad inputs; {ROLE_NAMES[role]} pairs need 2"
            )
        return [(kept[moving], kept[fixed]) for moving, fixed in consecutive_pairs(len(kept), _check_pair_count(role, count, len(kept)))]
    kept = [(moving, fixed) for moving, fixed in fixed_pairs if moving not in bad and fixed not in bad]
    if len(kept) < len(fixed_pairs):
        logger.warning("dropped %d %s pair(s) naming skipped subjects", len(fixed_pairs) - len(kept), ROLE_NAMES[role])
    return kept
