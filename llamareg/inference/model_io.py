"""Loading a trained model from a checkpoint for inference."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llamareg.config import Config, config_from_dict
from llamareg.networks.llamareg import build_model
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
        path: the checkpoint file.
    """

    model: nn.Module
    config: Config
    device: torch.device
    precision: Precision
    path: Path

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


def load_trained_model(path: str | Path, llm: str | None = None, device: str = "auto") -> TrainedModel:
    """Build the model a checkpoint describes and load its weights.

    Args:
        path: a ``best.pt`` or ``last.pt`` written by training.
        llm: where the LLM weights live when not where training read them (``llm.source``); the
            loaded layers must be the ones training used (their fingerprint is checked).
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: it is not a llamareg checkpoint, or does not fit the model its config builds.
    """
    path = Path(path)
    resolved = _device(device)
    payload = read_checkpoint(path)
    config = checkpoint_config(payload, str(path))
    if llm is not None:
        config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, source=llm))
    model = build_model(config)
    load_model_state(model, payload, str(path))
    model.requires_grad_(False)
    return TrainedModel(model.to(resolved).eval(), config, resolved, Precision.resolve(config.train.precision, resolved), path)


def _device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available; use --device cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
