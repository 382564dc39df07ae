"""Training cost of cascade steps: one step, step-by-step step 3, and joint, as ratios like the paper's.

Paper (single RTX 3090, AMP, 160x160x96): one step 7632 MB, the third decoder trained step by step
8384 MB (1.10x), all three jointly 14712 MB (1.93x). Here, on the CPU at 96x112x96 with the paper
preset (C=16, a LLaMA-2-7B-shaped layer with random weights, fp32), each case runs in its own
subprocess: peak RSS growth over the built model during training passes, and seconds per iteration
(forward, loss, backward, Adam step). Results go to ``benchmarks/results/cascade_cost.md`` and ``.json``.

Usage:
    python benchmarks/cascade_cost.py [--repeats 2] [--shape 96x112x96]
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
OVERRIDES = ["llm.source=random:llama-2-7b", "llm.dtype=float32", "train.precision=fp32", "train.device=cpu"]
# case -> (steps in the model, trainable steps (0-based), shared parts train, paper MB)
CASES = {
    "one step": (1, {0}, True, 7632),
    "step-by-step, step 3": (3, {2}, False, 8384),
    "joint, 3 steps": (3, {0, 1, 2}, False, 14712),
}


def measure(case: str, shape: str, repeats: int) -> dict:
    import torch

    from llamareg.config import load_config
    from llamareg.models import build_model
    from llamareg.training.objective import MultiScaleObjective

    steps, trainable, shared, _ = CASES[case]
    config = load_config("paper-knee-3090", OVERRIDES + [f"model.steps={steps}", f"data.shape=[{shape.replace('x', ',')}]"])
    torch.manual_seed(0)
    model = build_model(config)
    model.train_only(trainable, shared)
    objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, config.train.scale_weights)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.train.lr)
    built_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    moving, fixed = torch.rand(1, 1, *config.data.shape), torch.rand(1, 1, *config.data.shape)
    seconds = []
    for index in range(repeats + 1):
        tick = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = objective(moving, fixed, model(moving, fixed)["flows"])
        loss.backward()
        optimizer.step()
        if index:  # the first iteration warms up allocators and creates optimizer state
            seconds.append(time.perf_counter() - tick)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": case,
        "shape": list(config.data.shape),
        "seconds_per_iteration": sum(seconds) / len(seconds),
        "training_mb": (peak - built_rss) / 1024,
        "trainable": model.parameter_counts()["trainable"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shape", default="96x112x96")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(args.child, args.shape, args.repeats)))
        return
    rows = []
    for case in CASES:
        command = [sys.executable, __file__, "--child", case, "--shape", args.shape, "--repeats", str(args.repeats)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if result.returncode:
            raise RuntimeError(f"{case} failed:\n{result.stderr[-2000:]}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    base = rows[0]
    today = date.today().isoformat()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cascade_cost.json").write_text(json.dumps({"date": today, "machine": platform.machine(), "rows": rows}, indent=2) + "\n")
    lines = [
        "# Cascade training cost: one step, step-by-step step 3, joint",
        "",
        f"Measured {today} on a 2-core {platform.machine()} CPU by `python benchmarks/cascade_cost.py`: paper preset "
        f"(C=16, LLaMA-2-7B-shaped layer, random weights, fp32) at {args.shape}, batch 1. 'Training MB' is the peak "
        "resident memory growth over the built model during training iterations (activations, gradients, Adam state). "
        "Ratios are against one step in the same run; the paper's are GPU memory at 160x160x96 with AMP.",
        "",
        "| case | trainable params | s / iteration | x | training MB | x | paper MB | paper x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        paper = CASES[row["case"]][3]
        lines.append(
            f"| {row['case']} | {row['trainable']:,} | {row['seconds_per_iteration']:.2f} | "
            f"{row['seconds_per_iteration'] / base['seconds_per_iteration']:.2f} | {row['training_mb']:.0f} | "
            f"{row['training_mb'] / base['training_mb']:.2f} | {paper} | {paper / CASES['one step'][3]:.2f} |"
        )
    (RESULTS / "cascade_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
