"""Exported models: a ``model.safetensors`` file, and where the one shipped with llamareg lives.

An exported model holds what a checkpoint holds for inference, nothing else: the trainable tensors
(optionally in fp16) and, as JSON strings in the safetensors metadata, the training config and the
LLM identity (source and fingerprint). As with checkpoints, the frozen LLM layers are not stored;
they are reloaded from their source and their fingerprint is checked (see
:mod:`llamareg.training.checkpoint`).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

PRETRAINED_FORMAT = "llamareg-pretrained-v1"
MODEL_FILE = "model.safetensors"
# The shipped model's place inside the installed package; outputs name it by this, not by a
# machine-specific site-packages path.
SHIPPED_FOLDER = "pretrained"
SHIPPED_NAME = f"llamareg/{SHIPPED_FOLDER}/{MODEL_FILE}"
SHIPPED_REFERENCE = f"shipped:{SHIPPED_NAME}"
FP16_MAX = float(torch.finfo(torch.float16).max)


def shipped_model_path(folder: str | os.PathLike | None = None) -> Path:
    """Where the model shipped with llamareg is (it need not exist).

    Args:
        folder: The folder to look in instead of ``llamareg/pretrained`` of the installed package
            (tests use an exported model in a temporary folder).
    """
    if folder is not None:
        return Path(folder) / MODEL_FILE
    # pip installs llamareg as plain files (editable or not), so the resource is a file-system path.
    return Path(os.fspath(resources.files("llamareg").joinpath(SHIPPED_FOLDER, MODEL_FILE)))


def missing_shipped_model(path: Path, folder: str | os.PathLike | None) -> FileNotFoundError:
    """The one-line error for a run that needs the shipped model when none is installed."""
    where = SHIPPED_NAME if folder is None else str(path)
    return FileNotFoundError(f"no pretrained model is shipped in this installation ({where} missing); give --checkpoint")


def pack_pretrained(payload: dict[str, Any], fp16: bool = False) -> bytes:
    """The ``model.safetensors`` bytes of a checkpoint payload (its config, weights and LLM identity).

    Args:
        payload: A checkpoint as :func:`~llamareg.training.checkpoint.read_checkpoint` returns it.
        fp16: Store floating tensors as float16 (half the size; loading casts them back).

    Raises:
        ValueError: a tensor is not finite, or does not fit in float16 with ``fp16``.
    """
    tensors = {}
    for name, tensor in payload["model"].items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(
                f"checkpoint weight '{name}' is a {type(tensor).__name__}, not a tensor; give a checkpoint written by llamareg training"
            )
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            if not torch.isfinite(tensor).all():
                raise ValueError(
                    f"checkpoint weight '{name}' holds NaN or infinite values; export a checkpoint from before training diverged"
                )
            if fp16:
                if tensor.abs().max() > FP16_MAX:
                    raise ValueError(f"checkpoint weight '{name}' exceeds the float16 range (|x| > {FP16_MAX:g}); export without --fp16")
                tensor = tensor.to(torch.float16)
        # safetensors refuses views and tensors sharing storage; a fresh copy is neither.
        tensors[name] = tensor.contiguous().clone()
    metadata = {
        "format": PRETRAINED_FORMAT,
        "config": json.dumps(payload["config"]),
        "llm": json.dumps({"source": payload.get("llm_source"), "fingerprint": payload.get("llm_fingerprint")}),
    }
    return safetensors_bytes(tensors, metadata)


def read_pretrained(path: str | os.PathLike) -> dict[str, Any]:
    """An exported model as a checkpoint-like payload: ``config``, ``model``, ``llm_source``, ``llm_fingerprint``.

    Tensors come back as stored (fp16 ones stay fp16; the caller casts them to the model's dtypes).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: it is not a safetensors file written by ``llamareg export-pretrained``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as stream:
            metadata = stream.metadata() or {}
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    except Exception as error:  # safetensors raises its own error type for truncated or foreign files
        raise ValueError(
            f"{path} cannot be read as safetensors ({type(error).__name__}); it is corrupt or not an exported llamareg model"
        ) from None
    if metadata.get("format") != PRETRAINED_FORMAT:
        raise ValueError(f"{path} is not an exported llamareg model (its metadata lacks format '{PRETRAINED_FORMAT}')")
    try:
        config, llm = json.loads(metadata["config"]), json.loads(metadata["llm"])
    except (KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the metadata's config or llm entry is missing or not JSON ({error}); re-export the model") from None
    return {"config": config, "model": tensors, "llm_source": llm.get("source"), "llm_fingerprint": llm.get("fingerprint")}


def is_exported_model(path: Path) -> bool:
    """Whether ``path`` names an exported model (a ``.safetensors`` file) rather than a ``.pt`` checkpoint."""
    return path.suffix == ".safetensors"
