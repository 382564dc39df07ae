"""One-shot GPU check of the paper-scale figures: training memory and speed, inference time, DeepSpeed.

Preset ``paper-knee-3090`` at 160x160x96 with ``random:llama-2-7b`` (a LLaMA-2-7B-shaped layer, random
weights, fp16), fp16 AMP, batch 1, through the package's ``load_config``, ``build_model``, optimization and
objective, in one process: peak ``torch.cuda.max_memory_allocated``/``max_memory_reserved`` and seconds
per iteration for one step, cascade step 3 step by step and three steps jointly (beside the paper's
7632 / 8384 / 14712 MB on an RTX 3090); three-step inference ms per pair (paper: 241 ms); 20 iterations of a
one-rank ZeRO-2 DeepSpeed engine under ``ds_configs/zero2.json`` (fp16) and ``zero2-bf16.json``: losses,
loss scale, skipped steps (where ``deepspeed`` imports; else the file says why not).

Needs only torch, transformers, safetensors, scipy, pyyaml and tqdm (nibabel, mlflow, webdataset, gguf,
deepspeed, peft and matplotlib are imported lazily or not at all). ``--tiny`` runs the same rows on the
CPU at 32^3 with a SmolLM2-shaped random layer in fp32, 2 iterations each (the test suite does, so the
script cannot rot); its figures mean nothing and it never writes the GPU results file.

Usage:
    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.md]
    python benchmarks/gpu_check.py --tiny [--out /tmp/gpu_check_tiny.md]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.md"
TINY_OUT = Path(tempfile.gettempdir()) / "gpu_check_tiny.md"
PRESET = "paper-knee-3090"
COMMON = ["tracking.enabled=false", "train.batch_size=1", "train.grad_accumulation=1"]
GPU = {
    "overrides": ["llm.source=random:llama-2-7b", "llm.dtype=float16", "train.precision=fp16", "train.device=cuda"],
    "warmup": 3,
    "iterations": 10,
    "ds_iterations": 20,
    "pairs": 20,
}
TINY = {
    "overrides": [
        "llm.source=random:smollm2-135m",
        "llm.layers=[-1]",
        "llm.hidden_size=576",
        "llm.dtype=float32",
        "data.shape=[32, 32, 32]",
        "model.base_channels=4",
        "model.adapter_width=32",
        "model.inner_adapter_width=32",
        "train.precision=fp32",
        "train.device=cpu",
    ],
    "warmup": 0,
    "iterations": 2,
    "ds_iterations": 2,
    "pairs": 2,
}
# (case, model steps, trainable steps (0-based), encoder trains, paper MB): the phases plan_phases makes.
TRAINING = (("one step", 1, {0}, True, 7632), ("step 3, step by step", 3, {2}, False, 8384), ("3 steps, joint", 3, {0, 1, 2}, False, 14712))
PAPER_INFERENCE_MS = 241
DEEPSPEED = (("ZeRO-2 fp16", "ds_configs/zero2.json"), ("ZeRO-2 bf16", "ds_configs/zero2-bf16.json"))


def fresh_model(config) -> torch.nn.Module:
    """``build_model(config)``, seeded, after freeing the previous row's memory and resetting the peak memory."""
    from llamareg.models import build_model
    from llamareg.training.memory import reset_peak_memory

    gc.collect()
    if config.train.device == "cuda":
        torch.cuda.empty_cache()
    reset_peak_memory(torch.device(config.train.device))
    torch.manual_seed(0)
    return build_model(config)


def peak_mb(device: torch.device) -> tuple[float, float | None]:
    """Peak allocated and reserved MiB on CUDA; on the CPU the peak resident memory and None."""
    from llamareg.training.memory import peak_memory_mb

    if device.type == "cpu":
        return peak_memory_mb(device), None
    return torch.cuda.max_memory_allocated(device) / 2**20, torch.cuda.max_memory_reserved(device) / 2**20


def error_row(case: str, error: Exception, **cells) -> dict:
    """A row that failed: its error's first line in place of its figures (the other rows still run)."""
    return {"case": case, **cells, "error": f"{type(error).__name__}: {error}".splitlines()[0]}


def optimization_for(config, model, ds_config=None, context=None):
    """The trainer's parts (:mod:`llamareg.training.optimization`, the objective) around ``model``, and a step.

    ``step()`` trains one iteration on one random pair as ``Trainer._train_step`` does (the Trainer itself
    is not built: its module imports the data pipeline, and with it nibabel) and returns the loss terms.
    """
    from llamareg.training.objective import MultiScaleObjective
    from llamareg.training.optimization import DeepSpeedOptimization, LocalOptimization

    device, train = torch.device(config.train.device), config.train
    torch.backends.cudnn.benchmark = True  # as the Trainer sets it: fixed shapes
    model = model.to(device)
    optimization = (
        LocalOptimization(model, config, device) if ds_config is None else DeepSpeedOptimization(model, config, ds_config, context)
    )
    objective = MultiScaleObjective(train.similarity, train.reg_weight, train.scale_weights, train.label_weight, train.flow_weight)
    moving, fixed = (torch.rand(1, 1, *config.data.shape).to(device, optimization.input_dtype) for _ in range(2))

    def step() -> dict:
        loss, terms = objective(moving, fixed, optimization.forward(moving, fixed)["flows"])
        optimization.backward_and_step(loss)
        return terms

    return optimization, step


def timed(step, warmup: int, iterations: int, device: torch.device):
    """Seconds per call of ``step`` after ``warmup`` calls (the device synchronised), and the last result."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda device: None
    for _ in range(warmup):
        step()
    synchronize(device)
    tick = time.perf_counter()
    for _ in range(iterations):
        result = step()
    synchronize(device)
    return (time.perf_counter() - tick) / iterations, result


def training_rows(load, sizes: dict) -> list[dict]:
    """The three training cases: trainable parameters, seconds per iteration, peak memory, last loss."""
    rows = []
    for case, steps, trainable, shared, paper in TRAINING:
        config = load([f"model.steps={steps}"])
        device = torch.device(config.train.device)
        try:
            model = fresh_model(config)
            model.train_only(trainable, shared)
            optimization, step = optimization_for(config, model)
            seconds, terms = timed(step, sizes["warmup"], sizes["iterations"], device)
            allocated, reserved = peak_mb(device)
            rows.append(
                {
                    "case": case,
                    "trainable": model.parameter_counts()["trainable"],
                    "seconds": seconds,
                    "allocated": allocated,
                    "reserved": reserved,
                    "paper": paper,
                    "loss": terms["loss"].item(),
                }
            )
        except Exception as error:
            rows.append(error_row(case, error))
        model = optimization = step = None  # noqa: F841 (frees the row's memory before the next row)
    return rows


def inference_row(load, sizes: dict) -> dict:
    """Milliseconds per pair of the three-step model, without autograd, under the training precision's autocast."""
    from llamareg.training.precision import Precision

    try:
        config = load(["model.steps=3"])
        device = torch.device(config.train.device)
        model = fresh_model(config).to(device).eval()
        moving, fixed = (torch.rand(1, 1, *config.data.shape, device=device) for _ in range(2))
        with torch.no_grad(), Precision.resolve(config.train.precision, device).autocast():
            seconds, _ = timed(lambda: model(moving, fixed), sizes["warmup"], sizes["pairs"], device)
        return {"case": "inference, 3 steps", "ms": 1000 * seconds, "paper": PAPER_INFERENCE_MS, "allocated": peak_mb(device)[0]}
    except Exception as error:
        return error_row("inference, 3 steps", error)


def loss_scale(engine) -> float | None:
    """The engine's current loss scale (1 without a dynamic scaler; None where the optimizer shows none)."""
    value = getattr(engine.optimizer, "loss_scale", getattr(engine.optimizer, "cur_scale", None))
    return None if value is None else float(value)


def deepspeed_rows(load, sizes: dict) -> tuple[list[dict], str]:
    """One row per DeepSpeed config on a one-rank engine, or none and the reason (deepspeed does not import)."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))  # tests/distributed's
    try:
        import deepspeed
    except Exception as error:  # ImportError, or a broken install failing in its own imports
        return [], f"DeepSpeed rows skipped: deepspeed does not import ({type(error).__name__}: {error})".splitlines()[0]
    from llamareg.distributed import init_distributed, load_deepspeed_config

    base = load(["model.steps=1", "train.precision=auto"])
    device = torch.device(base.train.device)
    context = init_distributed(device.type)  # a world of one rank, rendezvous on 127.0.0.1
    rows = []
    for case, path in DEEPSPEED:
        try:
            ds_config, config = load_deepspeed_config(ROOT / path, base, context.world_size, device.type)
            optimization, step = optimization_for(config, fresh_model(config), ds_config, context)
            engine = optimization.engine
            scale_start, losses, tick = loss_scale(engine), [], time.perf_counter()
            for _ in range(sizes["ds_iterations"]):
                losses.append(step()["loss"].item())
            rows.append(
                {
                    "case": case,
                    "config": path,
                    "precision": config.train.precision,
                    "losses": losses,
                    "seconds": (time.perf_counter() - tick) / len(losses),
                    "scale_start": scale_start,
                    "scale_end": loss_scale(engine),
                    "skipped": int(getattr(engine, "skipped_steps", 0)),
                    "allocated": peak_mb(device)[0],
                }
            )
        except Exception as error:
            rows.append(error_row(case, error, config=path))
        optimization = engine = step = None
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return rows, f"DeepSpeed {deepspeed.__version__}, one rank"


def number(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def table(header: str, rows: list[dict], cells) -> list[str]:
    """A Markdown table: ``header`` (cells joined by " | "), then ``cells(row)`` per row, or the row's error."""
    width = header.count("|") + 1
    lines = [f"| {header} |", "|---" * width + "|"]
    for row in rows:
        found = [row["case"], f"failed: {row['error']}", *[""] * (width - 2)] if "error" in row else cells(row)
        lines.append("| " + " | ".join(map(str, found)) + " |")
    return lines


def report(rows: list[dict], ds_rows: list[dict], ds_note: str, tiny: bool, setting: str) -> str:
    """The Markdown results file."""
    machine = (
        f"CPU ({platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}"
        if tiny
        else f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version()}"
    )
    memory = "peak resident MB (CPU) | reserved MB" if tiny else "max allocated MB | max reserved MB"
    lines = [
        f"# GPU check{': tiny CPU smoke run (its figures mean nothing)' if tiny else ''}",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        f"Date: {date.today().isoformat()}. Machine: {machine}.",
        "",
        f"Setting: {setting}.",
        "",
        "## Training (peak memory over building the model and training; paper: RTX 3090, AMP)",
        "",
        "nvidia-smi, which the paper's figures are likely read from, shows reserved memory plus the CUDA context.",
        "",
    ]
    lines += table(
        f"case | trainable params | s / iteration | {memory} | paper MB | last loss",
        rows[:-1],
        lambda r: [
            r["case"],
            f"{r['trainable']:,}",
            f"{r['seconds']:.3f}",
            number(r["allocated"]),
            number(r["reserved"]),
            r["paper"],
            f"{r['loss']:.5f}",
        ],
    )
    lines += ["", "## Inference (three steps, no autograd, the training precision's autocast)", ""]
    lines += table(
        "case | ms / pair | paper ms | max allocated MB",
        rows[-1:],
        lambda r: [r["case"], f"{r['ms']:.1f}", r["paper"], number(r["allocated"])],
    )
    lines += ["", f"## DeepSpeed ({ds_note})", ""]
    if ds_rows:
        lines += table(
            "case | config | precision used | iterations | losses finite | first loss | last loss | loss scale start | "
            "loss scale end | skipped steps | s / iteration | max allocated MB",
            ds_rows,
            lambda r: [
                r["case"],
                r["config"],
                r["precision"],
                len(r["losses"]),
                "yes" if all(map(math.isfinite, r["losses"])) else "NO",
                f"{r['losses'][0]:.5f}",
                f"{r['losses'][-1]:.5f}",
                number(r["scale_start"]),
                number(r["scale_end"]),
                r["skipped"],
                f"{r['seconds']:.3f}",
                number(r["allocated"]),
            ],
        )
        lines += [
            "",
            "A working fp16 loss scaler: finite losses, a dynamic scale (2^16 at start) halved after overflows "
            "(each a skipped step), fewer skipped steps than iterations.",
        ]
        if tiny:
            lines.append("On the CPU an fp16 DeepSpeed config trains in bf16 or fp32 (llamareg.distributed.ds_config): no loss scaler.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run every row and write the Markdown file.

    Returns:
        0, or 1 when a row failed (its error is in the file; the other rows still ran).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, help=f"Markdown file to write (default {DEFAULT_OUT.relative_to(ROOT)}; with --tiny {TINY_OUT})"
    )
    parser.add_argument("--tiny", action="store_true", help="the same rows on the CPU at 32^3 in seconds (a smoke test)")
    args = parser.parse_args(argv)
    out = (args.out or (TINY_OUT if args.tiny else DEFAULT_OUT)).resolve()
    if args.tiny and out == DEFAULT_OUT:
        parser.error(f"--tiny must not write {DEFAULT_OUT.relative_to(ROOT)}, which holds GPU results; give another --out")
    if out.is_dir():
        parser.error(f"--out {out} is a folder; give a file path such as {out / 'gpu_check.md'}")
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("gpu_check.py: no CUDA GPU is available; this check needs one (or --tiny for the CPU smoke run)")
    sys.path.insert(0, str(ROOT))
    from llamareg.config import load_config

    sizes, started = (TINY if args.tiny else GPU), time.perf_counter()
    load = lambda extra: load_config(PRESET, [*sizes["overrides"], *COMMON, *extra])  # noqa: E731
    config = load([])
    setting = (
        f"preset {PRESET}, LLM {config.llm.source} ({config.llm.dtype}, layers {config.llm.layers}, {config.llm.calls} calls), "
        f"shape {'x'.join(map(str, config.data.shape))}, C={config.model.base_channels}, precision {config.train.precision}, batch 1; "
        f"{sizes['warmup']} warm-up then {sizes['iterations']} timed iterations, {sizes['pairs']} inference pairs, "
        f"{sizes['ds_iterations']} DeepSpeed iterations"
    )
    rows = [*training_rows(load, sizes), inference_row(load, sizes)]
    ds_rows, ds_note = deepspeed_rows(load, sizes)
    text = report(rows, ds_rows, ds_note, args.tiny, setting) + f"\nWall time of the whole check: {time.perf_counter() - started:.0f} s.\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text + f"\nwritten to {out}")
    return int(any("error" in row for row in rows + ds_rows))


if __name__ == "__main__":
    sys.exit(main())
