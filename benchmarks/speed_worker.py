"""One training-step worker for benchmarks/speed.py: builds a preset's model and objective with whatever
``llamareg`` is on ``sys.path`` (this checkout, or an older commit's worktree) and answers commands on
stdin, one JSON line per answer on stdout:

* ``step``: one training step (forward, objective, backward); answers its seconds and loss;
* ``profile``: one step under the PyTorch profiler; answers the convolution kernels' calls and self-CPU ms;
* ``memory``: answers the process's peak resident MiB.

It uses only the API every llamareg commit has had (``load_config``, ``build_model``,
``MultiScaleObjective(similarity, reg_weight, scale_weights)``), so the same step can be timed on an
older commit side by side.

The memory layout is this checkout's ``model.memory_format``; a commit from before that key has
contiguous convolutions only.

With the preset ``official=PATH`` it times the same step of the official release's ``DualLLama``
instead (``PATH/submission_version/models/{model,llama}.py`` of a MingR-Ma/llama_reg checkout, imported
from there and never copied here): one LLaMA-2-7B-shaped ``LLaMATransformer`` layer of random weights,
frozen as the release's ``train.py`` freezes it, called twice, at the shape of the ``data.shape=[D, H, W]``
override; its three flows (1/4, 1/2, full) go through this checkout's objective.

Usage (by speed.py): python speed_worker.py PRESET {fp32,bf16} {contiguous,channels_last} [KEY=VALUE ...]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import sys
import time

import torch

CONV_KERNELS = (
    "aten::slow_conv3d_forward",
    "aten::mkldnn_convolution",
    "aten::convolution_backward",
    "aten::slow_conv_transpose3d",
    "aten::copy_",
    "aten::cat",
    "aten::mm",
)


# The release's LLaMA-2-7B configuration (train.py): only layer 31 of 32 is built.
OFFICIAL_LLAMA = {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1.0e-6, "vocab_size": -1, "first_layer": 31}


def _shape_of(overrides: list[str]) -> tuple[int, int, int]:
    for override in overrides:
        if override.startswith("data.shape="):
            return tuple(int(size) for size in override.split("=", 1)[1].strip("[]").split(","))
    raise SystemExit("official=PATH needs a data.shape=[D, H, W] override")


def build_official(path: str, precision: str, layout: str, overrides: list[str]):
    """The release's DualLLama and its first-step training step (see the module docstring)."""
    from llamareg.training.objective import MultiScaleObjective

    if layout != "contiguous":
        raise SystemExit("the official release runs in the contiguous layout only")
    code = os.path.join(path, "submission_version", "models")
    if not os.path.isfile(os.path.join(code, "model.py")):
        raise SystemExit(f"--official {path}: no submission_version/models/model.py; give a checkout of MingR-Ma/llama_reg")
    sys.path[:0] = [code]  # model.py and llama.py import their neighbours by bare name
    from llama import LLaMATransformer
    from model import DualLLama

    shape = _shape_of(overrides)
    torch.manual_seed(0)
    llama = LLaMATransformer(OFFICIAL_LLAMA)
    model = DualLLama(in_channel=16, llama_model=llama, imgshape=shape, patch=tuple(size // 16 for size in shape))
    model.llama_block[2].requires_grad_(False)  # as the release's train.py
    model.llama_block[5].requires_grad_(False)
    objective = MultiScaleObjective("mse", 0.02, (0.25, 0.5, 1.0))
    generator = torch.Generator().manual_seed(1)
    moving, fixed = torch.rand(1, 1, *shape, generator=generator), torch.rand(1, 1, *shape, generator=generator)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

    def step() -> float:
        model.zero_grad(set_to_none=True)
        with autocast():
            outputs = model(moving, fixed)
        flows = [outputs[1], outputs[4], outputs[7]]  # f1 (1/4), f2 (1/2), f3 (full)
        loss = objective(moving, fixed, flows)[0]
        loss.backward()
        return loss.item()

    return step


def build(preset: str, precision: str, layout: str, overrides: list[str]):
    if preset.startswith("official="):
        return build_official(preset.split("=", 1)[1], precision, layout, overrides)
    import llamareg.networks.llamareg as network_module
    from llamareg.config import ModelConfig, load_config
    from llamareg.training.objective import MultiScaleObjective

    # Commits before llamareg/models.py (e.g. 5559755) kept the factory beside the network.
    build_model = getattr(network_module, "build_model", None)
    if build_model is None:
        from llamareg.models import build_model

    if any(field.name == "memory_format" for field in dataclasses.fields(ModelConfig)):
        overrides = [*overrides, f"model.memory_format={layout}"]
    elif layout != "contiguous":
        raise SystemExit(f"this commit has no model.memory_format: only the contiguous layout, not {layout}")
    config = load_config(preset, ["train.device=cpu", *overrides])
    torch.manual_seed(0)
    model = build_model(config)
    network = torch.compile(model) if getattr(config.train, "compile", False) else model  # as the trainer does
    objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, config.train.scale_weights)
    generator = torch.Generator().manual_seed(1)
    shape = tuple(config.data.shape)
    moving, fixed = torch.rand(1, 1, *shape, generator=generator), torch.rand(1, 1, *shape, generator=generator)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

    def step() -> float:
        model.zero_grad(set_to_none=True)
        with autocast():
            flows = network(moving, fixed)["flows"]
        loss = objective(moving, fixed, flows)[0]
        loss.backward()
        return loss.item()

    return step


def profile(step) -> dict:
    from torch.profiler import profile as torch_profile

    with torch_profile() as profiler:
        step()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events) / 1e3
    kernels = {e.key: {"calls": e.count, "self_ms": e.self_cpu_time_total / 1e3} for e in events if e.key in CONV_KERNELS}
    return {"kernels": kernels, "total_ms": total}


def main() -> int:
    preset, precision, layout = sys.argv[1:4]
    step = build(preset, precision, layout, sys.argv[4:])
    loss = step()  # warm-up
    print(json.dumps({"ready": True, "loss": loss}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            tick = time.perf_counter()
            loss = step()
            print(json.dumps({"seconds": time.perf_counter() - tick, "loss": loss}), flush=True)
        elif command == "profile":
            print(json.dumps(profile(step)), flush=True)
        elif command == "memory":
            print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
