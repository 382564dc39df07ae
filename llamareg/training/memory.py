"""Peak memory of one training phase: CUDA allocations on a GPU, resident memory on the CPU.

A cascade trains its phases in one process, so the CPU figure must be reset per phase: Linux
lets a process reset its resident-memory high-water mark (``VmHWM``) by writing ``5`` to
``/proc/self/clear_refs``. Where that is not possible (macOS, a restricted /proc) the figure is the
process's lifetime peak (``ru_maxrss``); :func:`reset_peak_memory` says which.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak-memory window on ``device``; False when the CPU peak cannot be reset.

    Example:
        >>> reset_peak_memory(torch.device("cpu")) in (True, False)
        True
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device``, or on the CPU the peak resident memory, in MiB,
    since the last :func:`reset_peak_memory` (on the CPU: since process start if it could not reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    # ru_maxrss is in kB on Linux and in bytes on macOS.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
