"""Checkpoints: written atomically, read with ``weights_only=True``, frozen weights left out.

The frozen LLM layers are not stored (a LLaMA-2-7B layer alone is 400 MB in fp16): a checkpoint keeps
the LLM source and a fingerprint of its tensors, and loading checks the fingerprint of the layers it
is given, so a checkpoint is never silently combined with other LLM weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llamareg.atomic import atomic_output

CHECKPOINT_FORMAT = "llamareg-checkpoint-v1"


def frozen_parameter_names(model: nn.Module) -> set[str]:
    """The frozen LLM weights, which never train and are reloaded from their source.

    Frozen cascade steps, LoRA factors, ViT blocks and ``llm.trainable`` layers are stored: they were
    trained here. A model
    without an LLM (a baseline) has none.
    """
    llm = getattr(model, "llm", None)
    if llm is None:
        return set()
    return {f"llm.{name}" for name in llm.frozen_weight_names()}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state without the frozen tensors."""
    frozen = frozen_parameter_names(model)
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save a checkpoint atomically (never a half-written file, even if the run is killed)."""
    with atomic_output(path) as temporary:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, temporary)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint safely (no unpickling of arbitrary objects) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}); it is corrupt or not a llamareg checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a llamareg checkpoint (expected format '{CHECKPOINT_FORMAT}')")
    return payload


def load_model_state(model: nn.Module, payload: dict[str, Any], origin: str, new_prefixes: tuple[str, ...] = ()) -> None:
    """Put a checkpoint's weights into ``model``, checking architecture and LLM identity.

    Args:
        new_prefixes: Parameter name prefixes the checkpoint may lack (a cascade step added after it).
    """
    llm = getattr(model, "llm", None)
    expected = payload.get("llm_fingerprint")
    if llm is not None and expected and llm.fingerprint and llm.fingerprint != expected:
        raise ValueError(
            f"checkpoint {origin} was trained with LLM {payload.get('llm_source')} (fingerprint {expected}); "
            f"the loaded LLM {llm.source} differs ({llm.fingerprint}); pass the same --llm"
        )
    try:
        missing, unexpected = model.load_state_dict(payload["model"], strict=False)
    except RuntimeError as error:  # tensor size mismatch
        detail = str(error).splitlines()[-1].strip()
        raise ValueError(f"checkpoint {origin} does not match this model's architecture ({detail}); check the config") from None
    frozen = frozen_parameter_names(model)
    missing = [k for k in missing if k not in frozen and not k.startswith(new_prefixes or ("\0",))]
    if missing or unexpected:
        names = (missing + unexpected)[:3]
        raise ValueError(f"checkpoint {origin} does not match this model's architecture (e.g. {names}); check the config")
