"""DeepSpeed JSON configs: read, ``"auto"`` values filled from the training config, contradictions refused.

The DeepSpeed config decides batch size, gradient accumulation and precision; the training config
must agree with it (or leave precision at ``auto``), so a run never silently trains with settings
other than the ones its recorded config shows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from llamareg.config import Config
from llamareg.training.precision import cpu_has_bf16_units

AUTO = "auto"
# The plain trainer's optimizer: torch's fused Adam without weight decay. DeepSpeed's "Adam" is AdamW
# (weight decay 0.01) unless adam_w_mode is false; fused is one kernel for all tensors (about 4x faster
# per step than the per-tensor loop on the CPU).
TORCH_ADAM = {"torch_adam": True, "adam_w_mode": False, "fused": True}
LOG = logging.getLogger(__name__)


def _cpu_precision(ds: dict[str, Any], path: Path) -> None:
    """On the CPU an fp16 DeepSpeed config trains in what ``train.precision=auto`` picks there (bf16 on CPUs
    with bf16 units, else fp32), never in fp16, whatever DeepSpeed reports as supported.

    fp16 is the GPU setting (the paper's RTX 3090). On a CPU, oneDNN runs fp16 convolution backward on
    its reference kernels: a CPU with AVX512-FP16 units, where DeepSpeed accepts fp16, took 56 s per
    iteration against 1.2 s in fp32. The warning says so once; the metrics record the precision used.
    """
    if not ds.get("fp16", {}).get("enabled", False):
        return
    chosen = "bf16" if cpu_has_bf16_units() else "fp32"
    ds.pop("fp16")
    if chosen == "bf16":
        ds["bf16"] = {"enabled": True}
    LOG.warning("--ds %s: fp16 is for GPUs; on this CPU training in %s (what train.precision=auto picks here)", path, chosen)


def _precision_of(ds: dict[str, Any]) -> str:
    fp16 = ds.get("fp16", {}).get("enabled", False)
    bf16 = ds.get("bf16", {}).get("enabled", False)
    if fp16 and bf16:
        raise ValueError("enables both fp16 and bf16; enable one")
    return "fp16" if fp16 else "bf16" if bf16 else "fp32"


def _agree(ds: dict[str, Any], key: str, wanted: Any, train_key: str) -> None:
    """Fill ``ds[key]`` from the training config when absent or "auto"; refuse a different value."""
    value = ds.get(key, AUTO)
    if value == AUTO:
        ds[key] = wanted
    elif value != wanted:
        raise ValueError(f'sets {key}={value} but {train_key}={wanted}; make them agree (e.g. {train_key}={value}) or set {key} to "auto"')


def read_deepspeed_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``; FileNotFoundError or ValueError naming ``--ds`` otherwise. Cheap, so the
    training command calls it before DeepSpeed and the process group start."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ds {path} does not exist; use one of ds_configs/*.json or your own DeepSpeed JSON")
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"--ds {path} is not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(ds, dict):
        raise ValueError(f"--ds {path} must hold a JSON object of DeepSpeed settings")
    return ds


def load_deepspeed_config(
    path: str | os.PathLike, config: Config, world_size: int, device_type: str = "cpu"
) -> tuple[dict[str, Any], Config]:
    """Read ``path`` and reconcile it with ``config`` for ``world_size`` ranks on ``device_type``.

    Returns:
        The DeepSpeed config to hand to ``deepspeed.initialize`` (every ``"auto"`` resolved, an Adam
        optimizer with ``train.lr`` added when it names none) and ``config`` with ``train.precision``
        set to the DeepSpeed config's. On a CPU, fp16 becomes bf16 or fp32, as ``auto`` picks (a warning says so).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not JSON, or contradicts the training config (the message names both keys).

    Example:
        >>> from llamareg.config import load_config
        >>> ds, config = load_deepspeed_config("ds_configs/zero2.json", load_config("cpu-default"), world_size=2)  # doctest: +SKIP
        >>> ds["train_batch_size"], config.train.precision  # doctest: +SKIP
        (2, 'fp16')
    """
    path = Path(path)
    ds = read_deepspeed_json(path)
    if device_type == "cpu":
        _cpu_precision(ds, path)
    train = config.train
    try:
        _agree(ds, "train_micro_batch_size_per_gpu", train.batch_size, "train.batch_size")
        _agree(ds, "gradient_accumulation_steps", train.grad_accumulation, "train.grad_accumulation")
        _agree(
            ds,
            "train_batch_size",
            train.batch_size * train.grad_accumulation * world_size,
            f"train.batch_size x train.grad_accumulation x {world_size} ranks",
        )
        precision = _precision_of(ds)
        if train.precision not in (AUTO, precision) and not (train.precision == "fp16" and device_type == "cpu"):
            raise ValueError(f"trains in {precision} but train.precision={train.precision}; set train.precision={precision} or auto")
        optimizer = ds.setdefault("optimizer", {"type": "Adam", "params": dict(TORCH_ADAM)})
        _agree(optimizer.setdefault("params", {}), "lr", train.lr, "train.lr")
        _agree(ds, "gradient_clipping", train.grad_clip, "train.grad_clip")
        stage = ds.get("zero_optimization", {}).get("stage", 0)
        if stage not in (0, 1, 2, 3):
            raise ValueError(f"sets zero_optimization.stage={stage}; use 0, 1, 2 or 3")
    except ValueError as error:
        raise ValueError(f"--ds {path} {error}") from None
    config = dataclasses.replace(config, train=dataclasses.replace(train, precision=precision))
    return ds, config
