"""Mixed precision: which autocast dtype and whether a gradient scaler is needed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles), where bf16 autocast pays;
    without them oneDNN emulates bf16 and fp32 is as fast."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence looked up with a default
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


@dataclass(frozen=True)
class Precision:
    """A resolved precision setting for one device.

    ``fp16`` is autocast plus a dynamic loss scaler (GradScaler), as the paper trains on an RTX 3090;
    ``bf16`` is autocast without scaling; ``fp32`` is neither. ``auto`` means fp16 on CUDA; on the CPU
    bf16 where the processor multiplies bf16 in hardware (:func:`cpu_has_bf16_units`), else fp32.

    Why bf16 on such CPUs: PyTorch sends a float32 3D convolution of batch 1 and few channels to its
    slow reference kernel (``slow_conv3d``), forward and backward, but every bf16 convolution to oneDNN;
    with :mod:`llamareg.networks.conv` keeping fp32 on oneDNN too, a ``cpu-default`` step is still about
    1.4x faster in bf16, in either memory layout (benchmarks/results/speed.md). fp16 on a CPU has no
    such kernels.
    """

    name: str
    device_type: str

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> "Precision":
        if name == "auto":
            name = "fp16" if device.type == "cuda" else "bf16" if device.type == "cpu" and cpu_has_bf16_units() else "fp32"
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
