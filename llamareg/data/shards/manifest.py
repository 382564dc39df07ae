"""``manifest.json``: what a finished shard set holds, written last so that its presence means "complete".

It records the counts, the common shape and spacing, the label ids, the pair list of each role
(``val``, ``test``), every shard's size and SHA-256, and every subject's key, split (``train``,
``val`` or ``test``), shard and source files. Readers refuse a folder without one and check each
shard against it before reading it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "llamareg-shards"
# Version 2: splits train/val/test and a pair list per role (version 1: train/val and eval_pairs.json,
# whose "val" subjects were the test subjects).
FORMAT_VERSION = 2
# The pair list of each held-out role beside the shards (llamareg.data.pair_list's format): training
# validates on ``val_pairs.json``; ``test_pairs.json`` is reported only (``llamareg evaluate --pairs``).
PAIR_LIST_NAMES = {"val": "val_pairs.json", "test": "test_pairs.json"}
REBUILD_HINT = "rebuild the shards with data_tools/build_shards.py"


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex digest)`` of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def read_manifest(shard_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a finished shard set.

    Raises:
        FileNotFoundError: ``shard_dir`` or its manifest does not exist (an unfinished build).
        ValueError: the manifest is not JSON or not of this format.
    """
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise FileNotFoundError(f"shard folder {shard_dir} does not exist; build it with data_tools/build_shards.py")
    path = shard_dir / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{shard_dir} has no {MANIFEST_NAME}; the build did not finish - rerun build_shards.py")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {REBUILD_HINT}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a {FORMAT_NAME} manifest; {REBUILD_HINT}")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {manifest.get('version')}, this llamareg reads {FORMAT_VERSION}; {REBUILD_HINT}")
    return manifest


def verify_shard(shard_dir: str | os.PathLike, entry: dict[str, Any], checksum: bool = True) -> Path:
    """The path of a shard after checking its size (and with ``checksum`` its SHA-256) against the manifest.

    Raises:
        FileNotFoundError: the shard is missing.
        ValueError: its size or checksum differs: the file is truncated, damaged or replaced.
    """
    path = Path(shard_dir) / entry["name"]
    if not path.is_file():
        raise FileNotFoundError(f"shard {path} listed in the manifest is missing; {REBUILD_HINT}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ValueError(
            f"shard {path} is {size} bytes but the manifest says {entry['bytes']}: it is truncated or was replaced; {REBUILD_HINT}"
        )
    if checksum and file_digest(path)[1] != entry["sha256"]:
        raise ValueError(f"shard {path} fails its SHA-256 check: its content is damaged; {REBUILD_HINT}")
    return path
