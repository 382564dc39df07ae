"""Per-phase peak memory: the CPU high-water mark is reset at each phase's start."""

import sys

import pytest
import torch

from llamareg.training.memory import peak_memory_mb, reset_peak_memory

CPU = torch.device("cpu")
BLOCK_MB = 256


def _touch_block() -> None:
    block = torch.ones(BLOCK_MB * 2**20 // 4)  # float32, every page written
    assert block.sum() > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resetting the resident high-water mark is Linux-only")
def test_cpu_peak_covers_only_the_window_since_the_reset():
    _touch_block()
    lifetime_peak = peak_memory_mb(CPU)
    assert reset_peak_memory(CPU)
    after_reset = peak_memory_mb(CPU)
    assert after_reset < lifetime_peak - BLOCK_MB / 2
    _touch_block()
    assert peak_memory_mb(CPU) > after_reset + BLOCK_MB / 2
