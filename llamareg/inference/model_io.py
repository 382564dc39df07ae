"""Loading a trained model for inference: a training checkpoint, an exported model, or the shipped one."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llamareg.config import Config, config_from_dict
from llamareg.devices import resolve_device
from llamareg.inference.pretrained import (
    MODEL_FILE,
    SHIPPED_REFERENCE,
    is_exported_model,
    missing_shipped_model,
    read_pretrained,
    shipped_model_path,
)
from llamareg.models import build_model
from llamareg.training.checkpoint import load_model_state, read_checkpoint
from llamareg.training.precision import Precision


@dataclass
class TrainedModel:
    """A model in eval mode with the config it was trained with.

    Attributes:
        model: the network (LLaMA-Reg or a baseline), every parameter frozen.
        config: the training config stored in the checkpoint (with ``--llm`` applied).
        device: where the model runs.
        precision: the training precision resolved for ``device`` (fp16 autocast on CUDA by default).
        path: the checkpoint or exported model file.
        sha256: the exported model file's SHA-256 (None for a ``.pt`` checkpoint).
        shipped: whether this is the model shipped with llamareg (loaded without a path).
    """

    model: nn.Module
    config: Config
    device: torch.device
    precision: Precision
    path: Path
    sha256: str | None = None
    shipped: bool = False

    @property
    def reference(self) -> str:
        """How outputs name the model: the file's path, or ``shipped:llamareg/pretrained/model.safetensors``."""
        return SHIPPED_REFERENCE if self.shipped else str(self.path)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The training volume shape, which the model grid takes."""
        return tuple(self.config.data.shape)


def checkpoint_config(payload: dict, origin: str) -> Config:
    """The :class:`Config` a checkpoint was trained with.

    Raises:
        ValueError: the payload has no config, or one this version of llamareg cannot read.
    """
    data = payload.get("config")
    if not isinstance(data, dict) or not isinstance(payload.get("model"), dict):
        raise ValueError(f"checkpoint {origin} lacks its config or weights; give a checkpoint written by llamareg training")
    try:
        config = config_from_dict(data)
    except ValueError as error:
        raise ValueError(f"checkpoint {origin} holds a config this llamareg cannot use: {error}") from None
    return config


def load_trained_model(
    path: str | os.PathLike | None = None,
    llm: str | None = None,
    device: str = "auto",
    shipped_folder: str | os.PathLike | None = None,
) -> TrainedModel:
    """Build the model a checkpoint or exported model describes and load its weights.

    Args:
        path: a ``best.pt`` or ``last.pt`` written by training; a ``.safetensors`` file written by
            ``llamareg export-pretrained`` (or the folder holding its ``model.safetensors``); or None
            for the model shipped with llamareg (``llamareg/pretrained/model.safetensors``).
        llm: where the LLM weights live when not where training read them (``llm.source``); the
            loaded layers must be the ones training used (their fingerprint is checked).
        device: ``auto``, ``cpu`` or ``cuda``.
        shipped_folder: with ``path`` None, the folder to take ``model.safetensors`` from instead of
            the installed package's ``llamareg/pretrained``.

    Raises:
        FileNotFoundError: the file does not exist, or (``path`` None) no model is shipped.
        ValueError: it is not a llamareg checkpoint or exported model, or does not fit the model its
            config builds, or the LLM layers differ from the ones it was trained with.
    """
    resolved = resolve_device(device, "--device")
    shipped = path is None
    path = _model_file(path, shipped_folder)
    exported = is_exported_model(path)
    payload = read_pretrained(path) if exported else read_checkpoint(path)
    config = checkpoint_config(payload, str(path))
    if llm is not None:
        if config.model.architecture != "llamareg" or config.model.token_block != "llm":
            kind = config.model.architecture if config.model.architecture != "llamareg" else "LLaMA-Reg with ViT blocks"
            raise ValueError(
                f"--llm applies to LLaMA-Reg models with LLM layers, but {path} is a {kind} model, which loads no LLM; leave --llm out"
            )
        config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, source=llm))
    model = build_model(config)
    if exported:
        payload = {**payload, "model": _as_model_dtypes(payload["model"], model)}
    load_model_state(model, payload, str(path))
    model.requires_grad_(False)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest() if exported else None
    precision = Precision.resolve(config.train.precision, resolved)
    return TrainedModel(model.to(resolved).eval(), config, resolved, precision, path, sha256=sha256, shipped=shipped)


def _model_file(path: str | os.PathLike | None, shipped_folder: str | os.PathLike | None) -> Path:
    """The file to read: the shipped model for None, ``model.safetensors`` inside a folder, else ``path``."""
    if path is None:
        shipped = shipped_model_path(shipped_folder)
        if not shipped.is_file():
            raise missing_shipped_model(shipped, shipped_folder)
        return shipped
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{path} is a folder without {MODEL_FILE}; give a checkpoint file or an exported model folder")
        return path / MODEL_FILE
    return path


def _as_model_dtypes(weights: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Floating tensors cast to the dtype of the model's own tensor of that name (fp16 exports back to fp32)."""
    reference = model.state_dict()

    def cast(name: str, tensor: torch.Tensor) -> torch.Tensor:
        target = reference.get(name)
        floating = target is not None and target.is_floating_point() and tensor.is_floating_point()
        return tensor.to(target.dtype) if floating else tensor

    return {name: cast(name, tensor) for name, tensor in weights.items()}
