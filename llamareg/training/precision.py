"""Mixed precision: which autocast dtype and whether a gradient scaler is needed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision setting for one device.

    ``fp16`` is autocast plus a dynamic loss scaler (GradScaler), as the paper trains on an RTX 3090;
    ``bf16`` is autocast without scaling; ``fp32`` is neither. ``auto`` means fp16 on CUDA and fp32 on
    the CPU, where fp16 kernels are slow and bf16 helps only on recent processors.
    """

    name: str
    device_type: str

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> "Precision":
        if name == "auto":
            name = "fp16" if device.type == "cuda" else "fp32"
        if name not in AUTOCAST_DTYPES:
            raise ValueError(f"train.precision must be auto, fp32, bf16 or fp16, got '{name}'")
        return cls(name, device.type)

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST_DTYPES[self.name]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")
