"""Find the subjects of a NIfTI dataset in one of the layouts the shard builder reads.

* ``learn2reg``: a Learn2Reg dataset JSON (e.g. ``OASIS_dataset.json``) with ``training`` entries
  ``{"image", "label"}`` and ``registration_val`` entries ``{"fixed", "moving"}``, paths relative to
  the JSON. Subjects named in ``registration_val`` are the test subjects and its pairs the test
  pairs (Learn2Reg's validation pairs are the test set of papers that report on them); a test image
  missing from ``training`` takes its label from ``labelsTr``.
* ``oasis``: the OASIS release, one folder per subject holding ``aligned_norm.nii.gz`` (image) and
  ``aligned_seg35.nii.gz`` (35 labels).
* ``oai``: one folder per knee holding ``image.nii.gz`` and binary masks ``femur``, ``tibia``,
  ``femoral_cartilage``, ``tibial_cartilage`` and optionally ``patella`` (``.nii.gz`` or ``.nii``),
  merged into one label map with the ids of :data:`OAI_LABELS`.
* ``folder``: a folder with ``images/`` and ``labels/`` (same file names; a missing label file
  leaves that subject unlabelled), or a CSV with columns ``image`` and optionally ``label``, ``key``
  and ``split`` (``train``/``val``/``test``), paths relative to the CSV.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

LAYOUTS = ("learn2reg", "oasis", "oai", "folder")
SPLITS = ("train", "val", "test")
NIFTI_SUFFIXES = (".nii.gz", ".nii")

OASIS_IMAGE = "aligned_norm.nii.gz"
OASIS_LABELS = "aligned_seg35.nii.gz"

# OAI knee label ids; femur to tibial cartilage follow the OAI-ZIB segmentations.
OAI_LABELS = {1: "femur", 2: "femoral_cartilage", 3: "tibia", 4: "tibial_cartilage", 5: "patella"}
OAI_IMAGE = "image"
OAI_OPTIONAL = ("patella",)
# Bones first, then cartilage: cartilage lies on the bone surface and wins where masks overlap.
OAI_MERGE_ORDER = (1, 3, 5, 2, 4)


@dataclass(frozen=True)
class SubjectRecord:
    """One subject of a dataset before it is read.

    Args:
        key: Unique name of the subject in the shards (letters, digits, ``_`` and ``-``).
        image: The image file.
        labels: Its label map file, or ``None``.
        label_masks: ``{label id: binary mask file}`` merged into one label map (OAI), or empty.
        split: ``train``, ``val`` or ``test`` when the dataset says so, ``None`` to let the builder decide.
    """

    key: str
    image: Path
    labels: Path | None = None
    label_masks: dict[int, Path] = field(default_factory=dict)
    split: str | None = None

    @property
    def labelled(self) -> bool:
        return self.labels is not None or bool(self.label_masks)

    @property
    def sources(self) -> list[Path]:
        """Every file this subject is read from."""
        return [self.image, *([self.labels] if self.labels else []), *self.label_masks.values()]


@dataclass
class DiscoveredDataset:
    """The subjects of a dataset and, when the dataset fixes them, its test pairs.

    Attributes:
        subjects: In a stable order (sorted by key unless the dataset lists an order).
        test_pairs: ``(moving key, fixed key)`` pairs, or ``None`` when the dataset has none.
    """

    subjects: list[SubjectRecord]
    test_pairs: list[tuple[str, str]] | None = None


def subject_key(text: str) -> str:
    """A shard-safe key: webdataset splits member names at the first dot, so only ``[A-Za-z0-9_-]`` stay.

    Example:
        >>> subject_key("OASIS_0001_0000.nii.gz"), subject_key("OAS1 0001/MR1")
        ('OASIS_0001_0000', 'OAS1_0001_MR1')
    """
    for suffix in NIFTI_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _absolute(path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.join(folder, path)))


def _find_nifti(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.name.endswith(NIFTI_SUFFIXES))


def _check_unique(subjects: list[SubjectRecord], where: Path) -> list[SubjectRecord]:
    seen: dict[str, Path] = {}
    for subject in subjects:
        if subject.key in seen:
            raise ValueError(f"{where}: {seen[subject.key]} and {subject.image} both make subject key '{subject.key}'; rename one")
        seen[subject.key] = subject.image
    if len(subjects) < 2:
        raise ValueError(f"{where} holds {len(subjects)} subject(s); registration pairs need at least 2")
    return subjects


def discover_learn2reg(path: Path) -> DiscoveredDataset:
    """Subjects and ``registration_val`` pairs (the test pairs) of a Learn2Reg dataset JSON (or the folder holding one)."""
    if path.is_dir():
        candidates = sorted(path.glob("*.json"))
        if len(candidates) != 1:
            raise ValueError(f"--input {path} must hold exactly one dataset JSON (found {len(candidates)}); give the JSON file itself")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"--input {path} does not exist; give the Learn2Reg dataset JSON, e.g. OASIS_dataset.json")
    try:
        description = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(description, dict) or not isinstance(description.get("training"), list):
        raise ValueError(f"{path} has no 'training' list; is it a Learn2Reg dataset JSON?")
    folder = path.parent
    by_image: dict[Path, SubjectRecord] = {}
    for index, entry in enumerate(description["training"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise ValueError(f"{path}: training entry {index} must hold an 'image' path, got {entry!r}")
        image = _absolute(entry["image"], folder)
        labels = _absolute(entry["label"], folder) if isinstance(entry.get("label"), str) else None
        by_image[image] = SubjectRecord(subject_key(image.name), image, labels)
    test_pairs = None
    if description.get("registration_val"):
        test_pairs = []
        for index, entry in enumerate(description["registration_val"]):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(role), str) for role in ("fixed", "moving")):
                raise ValueError(f"{path}: registration_val entry {index} must hold 'fixed' and 'moving' paths, got {entry!r}")
            keys = {}
            for role in ("moving", "fixed"):
                image = _absolute(entry[role], folder)
                known = by_image.get(image)
                if known is None or not known.labelled:
                    labels = Path(str(image).replace("imagesTr", "labelsTr").replace("imagesTs", "labelsTs"))
                    if labels == image or not labels.is_file():
                        raise ValueError(f"{path}: registration_val names {image}, whose label map was not found at {labels}")
                    known = SubjectRecord(subject_key(image.name), image, labels)
                by_image[image] = SubjectRecord(known.key, known.image, known.labels, split="test")
                keys[role] = known.key
            test_pairs.append((keys["moving"], keys["fixed"]))
    return DiscoveredDataset(_check_unique(list(by_image.values()), path), test_pairs)


def discover_oasis(folder: Path) -> DiscoveredDataset:
    """One subject per sub-folder holding ``aligned_norm.nii.gz``; its labels are ``aligned_seg35.nii.gz``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--input {folder} is not a folder; give the OASIS folder of per-subject folders")
    subjects = [
        SubjectRecord(subject_key(sub.name), sub / OASIS_IMAGE, sub / OASIS_LABELS)
        for sub in sorted(path for path in folder.iterdir() if path.is_dir())
        if (sub / OASIS_IMAGE).is_file()
    ]
    if not subjects:
        raise ValueError(f"--input {folder} has no sub-folder with {OASIS_IMAGE}; is it the OASIS release layout?")
    return DiscoveredDataset(_check_unique(subjects, folder))


def discover_oai(folder: Path) -> DiscoveredDataset:
    """One knee per sub-folder holding ``image.nii[.gz]`` and the bone and cartilage masks."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--input {folder} is not a folder; give the folder of per-knee folders")
    subjects = []
    for sub in sorted(path for path in folder.iterdir() if path.is_dir()):
        image = _find_nifti(sub, OAI_IMAGE)
        if image is None:
            continue
        masks = {}
        for label_id in OAI_MERGE_ORDER:
            name = OAI_LABELS[label_id]
            found = _find_nifti(sub, name)
            if found is not None:
                masks[label_id] = found
            elif name not in OAI_OPTIONAL:
                masks[label_id] = sub / f"{name}.nii.gz"  # reading it reports the missing mask by name
        subjects.append(SubjectRecord(subject_key(sub.name), image, label_masks=masks))
    if not subjects:
        raise ValueError(
            f"--input {folder} has no sub-folder with {OAI_IMAGE}.nii.gz; expected <knee>/image.nii.gz, <knee>/femur.nii.gz, ..."
        )
    return DiscoveredDataset(_check_unique(subjects, folder))


def _discover_csv(path: Path) -> DiscoveredDataset:
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or "image" not in rows[0]:
        raise ValueError(f"{path} must be a CSV with a header naming at least an 'image' column (optional: label, key, split)")
    subjects = []
    for number, row in enumerate(rows, start=2):
        if not row.get("image"):
            raise ValueError(f"{path} line {number}: empty image path")
        split = (row.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise ValueError(f"{path} line {number}: split must be train, val or test, got '{split}'")
        image = _absolute(row["image"].strip(), path.parent)
        labels = _absolute(row["label"].strip(), path.parent) if (row.get("label") or "").strip() else None
        key = subject_key((row.get("key") or "").strip() or image.name)
        subjects.append(SubjectRecord(key, image, labels, split=split))
    return DiscoveredDataset(_check_unique(subjects, path))


def discover_folder(path: Path) -> DiscoveredDataset:
    """A CSV of image/label paths, or a folder with ``images/`` and ``labels/`` of matching file names."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return _discover_csv(path)
    if not (path / "images").is_dir():
        raise FileNotFoundError(f"--input {path} must be a CSV file or a folder holding images/ (and labels/) of NIfTI files")
    labels_folder = path / "labels"
    subjects = []
    for image in _nifti_files(path / "images"):
        labels = labels_folder / image.name
        subjects.append(SubjectRecord(subject_key(image.name), image, labels if labels.is_file() else None))
    return DiscoveredDataset(_check_unique(subjects, path))


def discover(layout: str, path: str | os.PathLike) -> DiscoveredDataset:
    """The subjects of the dataset at ``path`` in ``layout`` (one of :data:`LAYOUTS`).

    Raises:
        FileNotFoundError: the input does not exist.
        ValueError: an unknown layout, a malformed dataset description, clashing keys or fewer than two subjects.
    """
    path = Path(os.path.abspath(path))
    finders = {"learn2reg": discover_learn2reg, "oasis": discover_oasis, "oai": discover_oai, "folder": discover_folder}
    if layout not in finders:
        raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got '{layout}'")
    if not path.exists():
        raise FileNotFoundError(f"--input {path} does not exist")
    return finders[layout](path)
