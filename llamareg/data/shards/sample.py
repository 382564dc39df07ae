"""One subject as a webdataset sample: ``<key>.image.npy``, ``<key>.labels.npy`` and ``<key>.meta.json``.

Arrays are written with ``np.save(allow_pickle=False)`` and read with ``np.load(allow_pickle=False)``;
nothing in a shard is ever unpickled. Decoding checks every member against the manifest, so a
damaged or mismatched sample is an error naming its shard and key, never a silently wrong volume.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import torch

from llamareg.data.volume import Volume

IMAGE_MEMBER = "image.npy"
LABELS_MEMBER = "labels.npy"
META_MEMBER = "meta.json"
MEMBERS = (IMAGE_MEMBER, LABELS_MEMBER, META_MEMBER)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def compact_label_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest unsigned type holding every id (label maps are mostly uint8 on disk)."""
    largest = int(labels.max(initial=0))
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label id {largest} does not fit 32 bits")


def encode_sample(key: str, image: np.ndarray, labels: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    """The webdataset sample of one subject: ``(D, H, W)`` float32 image, integer labels, JSON metadata.

    Example:
        >>> sample = encode_sample("s1", np.zeros((2, 2, 2), np.float32), np.ones((2, 2, 2), np.int64), {"affine": np.eye(4).tolist()})
        >>> sorted(sample)
        ['__key__', 'image.npy', 'labels.npy', 'meta.json']
    """
    if image.dtype != np.float32 or image.ndim != 3 or labels.shape != image.shape:
        raise ValueError(
            f"subject {key}: need a 3D float32 image and labels of its shape, got {image.dtype} {image.shape} and {labels.shape}"
        )
    return {
        "__key__": key,
        IMAGE_MEMBER: _npy_bytes(image),
        LABELS_MEMBER: _npy_bytes(labels.astype(compact_label_dtype(labels))),
        META_MEMBER: json.dumps(meta).encode("utf-8"),
    }


def _load_npy(data: bytes, where: str, member: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise ValueError(f"{where}: member {member} is not a plain .npy array ({error}); rebuild the shards") from None


def decode_sample(sample: dict[str, Any], shape: tuple[int, int, int], where: str) -> tuple[Volume, dict[str, Any]]:
    """The :class:`Volume` and metadata of a raw sample read from a shard.

    Args:
        sample: ``{"__key__": key, "image.npy": bytes, "labels.npy": bytes, "meta.json": bytes}``.
        shape: the shape every volume of the shard set has (from the manifest).
        where: the shard file, for error messages.

    Raises:
        ValueError: naming ``where`` and the key: a missing member, a member that does not decode, a
            shape other than ``shape``, non-integer labels, or image values that are NaN or outside ``[0, 1]``.
    """
    key = sample.get("__key__", "?")
    where = f"{where}, subject {key}"
    missing = [member for member in MEMBERS if member not in sample]
    if missing:
        raise ValueError(f"{where}: members {', '.join(missing)} are missing; the shard is damaged, rebuild it")
    image = _load_npy(sample[IMAGE_MEMBER], where, IMAGE_MEMBER)
    labels = _load_npy(sample[LABELS_MEMBER], where, LABELS_MEMBER)
    try:
        meta = json.loads(sample[META_MEMBER])
        affine = np.asarray(meta["affine"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{where}: {META_MEMBER} is not valid metadata ({error}); rebuild the shards") from None
    if image.dtype != np.float32 or image.shape != tuple(shape):
        raise ValueError(f"{where}: image is {image.dtype} {image.shape} but the manifest says float32 {tuple(shape)}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != image.shape:
        raise ValueError(f"{where}: labels are {labels.dtype} {labels.shape}; integer labels of the image's shape are needed")
    if affine.shape != (4, 4):
        raise ValueError(f"{where}: affine has shape {affine.shape}, not (4, 4)")
    try:
        volume = Volume(
            image=torch.from_numpy(image)[None],
            labels=torch.from_numpy(labels.astype(np.int64))[None],
            affine=torch.from_numpy(affine),
            name=key,
        )
    except ValueError as error:  # NaN or values outside [0, 1]
        raise ValueError(f"{where}: {error}; rebuild the shards") from None
    return volume, meta
