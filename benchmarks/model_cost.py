"""Forward+backward time and peak memory per pair, and parameter counts, for the shipped presets.

Each measurement runs in its own subprocess so that peak resident memory (ru_maxrss) belongs to that
measurement alone. The paper preset uses a LLaMA-2-7B-shaped layer with random weights (the checkpoint
is not shipped) in float32, since fp16 matmuls on a CPU are slow. Results go to
``benchmarks/results/model_cost.md`` and ``.json``.

Usage:
    python benchmarks/model_cost.py [--repeats 2] [--shapes 96x112x96 160x160x96]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# (label, preset, overrides); the paper preset is measured at both of the shapes.
PAPER = ("paper-knee-3090", ["llm.source=random:llama-2-7b", "llm.dtype=float32", "train.precision=fp32", "train.device=cpu"])
DEFAULT = ("cpu-default", ["train.device=cpu"])


def measure(preset: str, overrides: list[str], shape: str | None, repeats: int) -> dict:
    """Run in this process: build the model, then time ``repeats`` forward+backward passes after a warm-up."""
    import torch

    from llamareg.config import load_config
    from llamareg.models import build_model
    from llamareg.training.objective import MultiScaleObjective

    if shape:
        overrides = overrides + [f"data.shape=[{shape.replace('x', ',')}]"]
    config = load_config(preset, overrides)
    torch.manual_seed(0)
    model = build_model(config)
    objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, config.train.scale_weights)
    built_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    moving, fixed = torch.rand(1, 1, *config.data.shape), torch.rand(1, 1, *config.data.shape)
    seconds = []
    for index in range(repeats + 1):
        tick = time.perf_counter()
        loss, _ = objective(moving, fixed, model(moving, fixed)["flows"])
        loss.backward()
        model.zero_grad(set_to_none=True)
        if index:  # the first pass warms up allocators and kernels
            seconds.append(time.perf_counter() - tick)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "preset": preset,
        "shape": list(config.data.shape),
        "llm": config.llm.source,
        "base_channels": config.model.base_channels,
        "seconds_per_pair": sum(seconds) / len(seconds),
        "peak_rss_mb": peak_rss / 1024,
        "training_pass_mb": (peak_rss - built_rss) / 1024,
        "parameters": model.parameter_counts(),
    }


def run_child(preset: str, overrides: list[str], shape: str | None, repeats: int) -> dict:
    command = [sys.executable, __file__, "--child", preset, "--repeats", str(repeats), "--overrides", *overrides]
    if shape:
        command += ["--shape", shape]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise RuntimeError(f"measurement {preset} {shape} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_results(rows: list[dict]) -> None:
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    (RESULTS / "model_cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    base = next(r for r in rows if r["preset"] == PAPER[0] and r["shape"] == [96, 112, 96])
    lines = [
        "# Model cost on the CPU: forward+backward per pair, peak memory, parameters",
        "",
        f"Measured {meta['date']} on {meta['machine']}, {meta['cpu_threads']} threads, torch {meta['torch']}, by "
        "`python benchmarks/model_cost.py`. One training pass = forward, multi-scale loss, backward (batch 1, fp32). "
        "Peak RSS is the whole process; 'training pass' is the growth over the built model. "
        "Ratios are against the paper preset at 96x112x96, measured in the same run.",
        "",
        "| preset | LLM | shape | s / pair | x | peak RSS MB | training pass MB | x | trainable | frozen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['llm']} | {'x'.join(map(str, r['shape']))} | {r['seconds_per_pair']:.2f} | "
            f"{r['seconds_per_pair'] / base['seconds_per_pair']:.2f} | {r['peak_rss_mb']:.0f} | {r['training_pass_mb']:.0f} | "
            f"{r['training_pass_mb'] / base['training_pass_mb']:.2f} | {r['parameters']['trainable']:,} | {r['parameters']['frozen']:,} |"
        )
    lines += ["", "The paper reports 7632 MB of GPU memory for one step at 160x160x96 with AMP on an RTX 3090 (fp16 activations).", ""]
    (RESULTS / "model_cost.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=["96x112x96", "160x160x96"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(args.child, args.overrides, args.shape, args.repeats)))
        return
    rows = [run_child(PAPER[0], PAPER[1], shape, args.repeats) for shape in args.shapes]
    rows.append(run_child(DEFAULT[0], DEFAULT[1], None, args.repeats))
    write_results(rows)


if __name__ == "__main__":
    main()
