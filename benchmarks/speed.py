"""Training-step speed by precision and memory layout, interleaved in one run, with a kernel profile.

One step is the trainer's: the model built by the factory, called on one pair, the training objective
(with the end-point-error term when the preset sets ``train.flow_weight``), and backward. Variants:

* ``fp32``: float32, contiguous tensors (as ``train.precision=fp32``);
* ``fp32-channels-last``: float32, model and inputs in ``torch.channels_last_3d``;
* ``bf16``: bf16 autocast (what ``train.precision=auto`` picks on CPUs with bf16 units).

Rounds interleave the variants (A, B, C, A, B, C, ...) so that drifts of the machine load hit all of
them alike; the figure is the median step time, and the ratio is against ``fp32`` of the same run.
Peak resident memory of each variant is measured in a subprocess of its own. The profile counts the
3D convolutions by kernel: ``slow_conv3d`` is PyTorch's reference kernel, ``mkldnn`` is oneDNN.

Usage:
    python benchmarks/speed.py [--config cpu-default] [--rounds 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from llamareg.atomic import write_json
from llamareg.config import load_config
from llamareg.evaluation.report import write_text
from llamareg.networks.llamareg import build_model
from llamareg.training.objective import MultiScaleObjective
from llamareg.training.precision import Precision, cpu_has_bf16_units

VARIANTS = ("fp32", "fp32-channels-last", "bf16")
CONV_KERNELS = ("aten::slow_conv3d_forward", "aten::mkldnn_convolution", "aten::convolution_backward",
                "aten::slow_conv_transpose3d", "aten::_slow_conv2d_forward")


def training_step(config_name: str, variant: str) -> Callable[[], float]:
    """A closure running one training step of ``variant``; returns the loss."""
    config = load_config(config_name, ["train.device=cpu"])
    torch.manual_seed(0)
    model = build_model(config)
    objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, config.train.scale_weights,
                                    flow_weight=config.train.flow_weight)
    shape = tuple(config.data.shape)
    generator = torch.Generator().manual_seed(1)
    moving, fixed = torch.rand(1, 1, *shape, generator=generator), torch.rand(1, 1, *shape, generator=generator)
    true_flow = torch.randn(1, 3, *shape, generator=generator) if config.train.flow_weight > 0 else None
    if variant == "fp32-channels-last":
        model = model.to(memory_format=torch.channels_last_3d)
        moving, fixed = (x.contiguous(memory_format=torch.channels_last_3d) for x in (moving, fixed))
    precision = Precision("bf16" if variant == "bf16" else "fp32", "cpu")

    def step() -> float:
        model.zero_grad(set_to_none=True)
        with precision.autocast():
            flows = model(moving, fixed)["flows"]
        loss, _ = objective(moving, fixed, flows, true_flow=true_flow)
        loss.backward()
        return loss.item()

    return step


def kernel_profile(step: Callable[[], float]) -> dict:
    """Calls and self-CPU milliseconds of the convolution kernels in one step, and their share of it."""
    from torch.profiler import profile

    with profile() as profiler:
        step()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    kernels = {event.key: {"calls": event.count, "self_ms": event.self_cpu_time_total / 1e3}
               for event in events if event.key in CONV_KERNELS}
    slow = sum(v["self_ms"] for k, v in kernels.items() if "slow" in k)
    return {"kernels": kernels, "total_ms": total / 1e3, "slow_kernel_share": slow * 1e3 / total if total else 0.0}


def memory_of(config_name: str, variant: str) -> float:
    """Peak resident MiB of a fresh process that builds the model and runs two steps of ``variant``."""
    result = subprocess.run([sys.executable, __file__, "--config", config_name, "--memory-of", variant],
                            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    return float(result.stdout.strip().splitlines()[-1])


def render(result: dict) -> str:
    lines = [
        f"# Training-step speed: {result['config']}",
        "",
        result["what"],
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; bf16 units: {result['bf16_units']}; torch {result['torch']}, {result['threads']} threads; "
        f"written {result['written']}; `train.precision=auto` resolves to **{result['auto']}** here.",
        "",
        "| variant | median s per step | speed-up vs fp32 | loss | peak RSS MiB | share of the step in slow_conv3d forward | forward convs on slow_conv3d / oneDNN |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["variants"].items():
        kernels = row["profile"]["kernels"]
        slow = kernels.get("aten::slow_conv3d_forward", {}).get("calls", 0)
        fast = kernels.get("aten::mkldnn_convolution", {}).get("calls", 0)
        lines.append(f"| {name} | {row['median_seconds']:.3f} | {row['speedup']:.2f}x | {row['loss']:.6f} | {row['peak_rss_mib']:.0f} | "
                     f"{100 * row['profile']['slow_kernel_share']:.0f} % | {slow} / {fast} |")
    lines += ["", "Profile of one step, convolution kernels (self CPU ms):", ""]
    for name, row in result["variants"].items():
        kernels = ", ".join(f"{k.removeprefix('aten::')} {v['calls']} calls {v['self_ms']:.0f} ms" for k, v in row["profile"]["kernels"].items())
        lines.append(f"* {name} ({row['profile']['total_ms']:.0f} ms in all): {kernels}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu-default", help="preset whose model, shape and objective are timed")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--out", default="benchmarks/results", help="results folder (speed.md, speed.json)")
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)  # the subprocess of memory_of
    args = parser.parse_args(argv)
    if args.memory_of:
        step = training_step(args.config, args.memory_of)
        step(), step()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return 0
    if args.rounds < 3:
        raise SystemExit("--rounds must be >= 3")
    steps = {variant: training_step(args.config, variant) for variant in VARIANTS}
    losses = {variant: step() for variant, step in steps.items()}  # warm-up
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant, step in steps.items():
            tick = time.perf_counter()
            step()
            times[variant].append(time.perf_counter() - tick)
    baseline = statistics.median(times["fp32"])
    variants = {}
    for variant in VARIANTS:
        median = statistics.median(times[variant])
        variants[variant] = {"median_seconds": median, "seconds": times[variant], "speedup": baseline / median, "loss": losses[variant],
                             "profile": kernel_profile(steps[variant]), "peak_rss_mib": memory_of(args.config, variant)}
        print(f"{variant}: {median:.3f} s per step ({baseline / median:.2f}x)", flush=True)
    result = {
        "what": (f"One training step of `{args.config}` (model from the factory, one pair, the training objective, backward), "
                 f"{args.rounds} interleaved rounds after a warm-up; losses are of the same pair and initial weights."),
        "config": args.config,
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()} ({platform.processor() or 'cpu'}), {os.cpu_count()} cores",
        "bf16_units": cpu_has_bf16_units(),
        "auto": Precision.resolve("auto", torch.device("cpu")).name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "variants": variants,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "speed.json", result)
    write_text(out / "speed.md", render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
