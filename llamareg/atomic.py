"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "result.txt"
        >>> with atomic_output(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    # mkstemp creates the file private (0600); outputs get the permissions a plain open() would give.
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)
    try:
        yield temporary
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return Path(path)


def check_out_folder(path: str | Path, earlier_outputs: Sequence[str] = (), overwrite: bool = False, option: str = "--out") -> Path:
    """Check that ``--out`` (or the named ``option``) is a folder this process can write, or can become one
    (nothing is created here), and that it holds none of ``earlier_outputs`` (glob patterns) unless ``overwrite``.

    Raises:
        ValueError: ``path`` or one of its parents is a file, the nearest existing folder is not
            writable, or the folder holds earlier outputs (the message offers ``--overwrite``).
    """
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{option} {path}: {folder} is a file, not a folder; give a folder path")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ValueError(f"{option} {path}: {folder} is not writable; give an {option} where you can write")
            break
    if path.is_dir() and not overwrite:
        earlier = sorted(str(found.name) for pattern in earlier_outputs for found in path.glob(pattern))
        if earlier:
            raise ValueError(
                f"{option} {path} already holds outputs ({', '.join(earlier[:3])}{', ...' if len(earlier) > 3 else ''}); "
                f"give another {option} or --overwrite to replace them"
            )
    return path
