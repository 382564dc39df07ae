"""Which torch device a ``train.device`` or ``--device`` setting means."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, option: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` as a torch device; ``cuda`` is the GPU of
    ``local_rank`` (one per rank on a multi-GPU machine).

    Args:
        name: the setting's value.
        option: how the user set it (``train.device``, ``--device``), for the error messages.
        local_rank: this process's rank on its machine.

    Raises:
        ValueError: naming ``option`` for an unknown value, or ``cuda`` without a CUDA device.

    Example:
        >>> resolve_device("cpu", "--device")
        device(type='cpu')
    """
    if name not in DEVICE_CHOICES:
        raise ValueError(f"{option} must be auto, cpu or cuda, got '{name}'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option}=cuda but no CUDA device is available; use {option}=cpu (or auto)")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device("cpu")
