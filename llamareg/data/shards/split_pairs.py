"""Pair lists beside the shards: ``val_pairs.json`` (training validates on them) and ``test_pairs.json``
(reported only: the file to give ``llamareg evaluate --pairs``).

A JSON list of objects, one per ordered pair::

    [{"fixed": "...nii.gz", "moving": "...nii.gz", "fixed_labels": "...nii.gz", "moving_labels": "...nii.gz"}, ...]

Paths name the NIfTI files of the source dataset; a relative path is relative to the folder of the
list itself, so a dataset copied together with its list keeps working.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llamareg.atomic import write_json

# The pair list of each role; the manifest's "pairs" names the ones a folder has.
PAIR_LIST_NAMES = {"val": "val_pairs.json", "test": "test_pairs.json"}
PAIR_KEYS = ("fixed", "moving", "fixed_labels", "moving_labels")


def stored_path(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """``path`` as written into a list kept in ``folder``: relative when inside it, else absolute."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def resolve_path(text: str, folder: str | os.PathLike) -> Path:
    """The absolute path a list entry ``text`` in ``folder`` names (no symlinks followed)."""
    return Path(os.path.abspath(os.path.join(folder, text)))


def read_pair_list(path: str | os.PathLike) -> list[dict[str, Path]]:
    """The pairs of a pair-list file, every path made absolute.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file: not JSON, not a list, or an entry lacking one of the four keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair list {path} does not exist")
    try:
        entries = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"pair list {path} is not valid JSON ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"pair list {path} must be a non-empty JSON list of {{{', '.join(PAIR_KEYS)}}} objects")
    pairs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(not isinstance(entry.get(key), str) for key in PAIR_KEYS):
            raise ValueError(f"pair list {path}: entry {index} must hold the paths {', '.join(PAIR_KEYS)}, got {entry!r}")
        pairs.append({key: resolve_path(entry[key], path.parent) for key in PAIR_KEYS})
    return pairs


def write_pair_list(path: str | os.PathLike, pairs: list[dict[str, str | os.PathLike]]) -> Path:
    """Write ``pairs`` (dicts of the four paths) atomically, paths stored relative to the list when inside its folder."""
    folder = Path(path).parent
    return write_json(path, [{key: stored_path(pair[key], folder) for key in PAIR_KEYS} for pair in pairs])
