"""The pair-list file (``PAIRS.json``): which image registers to which, with optional label maps.

A JSON list of objects with the keys ``fixed``, ``moving``, ``fixed_labels`` and ``moving_labels``
(paths; a relative path is relative to the list's own folder, so a dataset copied together with its
list keeps working)::

    [{"fixed": "s01.nii.gz", "moving": "s02.nii.gz",
      "fixed_labels": "s01_labels.nii.gz", "moving_labels": "s02_labels.nii.gz"}]

``llamareg register`` and ``evaluate`` read such lists, and ``data_tools`` writes them beside the shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamareg.atomic import write_json

PAIR_KEYS = ("fixed", "moving", "fixed_labels", "moving_labels")


@dataclass(frozen=True)
class PairPaths:
    """The files of one pair; the label maps are optional."""

    fixed: Path
    moving: Path
    fixed_labels: Path | None = None
    moving_labels: Path | None = None


def stored_path(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """``path`` as written into a list kept in ``folder``: relative when inside it, else absolute."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def resolve_path(text: str, folder: str | os.PathLike) -> Path:
    """The absolute path a list entry ``text`` in ``folder`` names (no symlinks followed)."""
    return Path(os.path.abspath(os.path.join(folder, text)))


def read_pair_list(path: str | os.PathLike, required: tuple[str, ...] = ("fixed", "moving")) -> list[PairPaths]:
    """Read a pair list, checking its structure (not yet the files it names); every path made absolute.

    Args:
        path: the JSON file.
        required: keys every entry must have (others of :data:`PAIR_KEYS` are optional).

    Raises:
        FileNotFoundError: the JSON file does not exist.
        ValueError: naming the file and entry: not JSON, not a non-empty list of objects, an unknown or
            missing key, or a value that is not a path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair list {path} does not exist")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"pair list {path} is not valid JSON ({error})".splitlines()[0]) from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"pair list {path} must be a non-empty JSON list of objects with keys {list(PAIR_KEYS)}")
    pairs = []
    for index, entry in enumerate(entries):
        where = f"pair list {path}, entry {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object with keys {list(PAIR_KEYS)}, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(PAIR_KEYS))
        if unknown:
            raise ValueError(f"{where} has unknown key '{unknown[0]}'; the keys are {list(PAIR_KEYS)}")
        missing = [key for key in required if key not in entry]
        if missing:
            raise ValueError(f"{where} lacks '{missing[0]}'; every entry needs {list(required)}")
        for key, value in entry.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: '{key}' must be a file path string, got {value!r}")
        pairs.append(PairPaths(**{key: resolve_path(value, path.parent) for key, value in entry.items()}))
    return pairs


def write_pair_list(path: str | os.PathLike, pairs: Sequence[Mapping[str, str | os.PathLike]]) -> Path:
    """Write ``pairs`` (mappings of :data:`PAIR_KEYS` to paths) atomically, each path stored relative to
    the list when inside its folder."""
    folder = Path(path).parent
    return write_json(path, [{key: stored_path(pair[key], folder) for key in PAIR_KEYS if key in pair} for pair in pairs])
