"""Training-step speed by precision and memory layout, interleaved in one run, with a kernel profile;
optionally against an earlier commit of llamareg, side by side.

One step is the trainer's: the model built by the factory, called on one pair, the image objective
(similarity + diffusion over the flows' scales) and backward. Each variant runs in a worker process
of its own (``speed_worker.py``), so that its peak resident memory is its own; rounds interleave the
workers (A, B, C, A, B, C, ...) so that drifts of the machine's load hit all of them alike. The figure
is the median step time, ratios are against the first row of the same run. The profile counts the 3D
convolutions by kernel: ``slow_conv3d`` is PyTorch's reference kernel, ``mkldnn`` is oneDNN.

Variants of ``--config`` (default ``cpu-default``): fp32 contiguous, fp32 channels-last-3d, and bf16
autocast (what ``train.precision=auto`` picks on CPUs with bf16 units). With ``--baseline COMMIT``
(for example 5559755) the rows are instead that commit's ``cpu-default`` (checked out in a temporary
git worktree; fp32, its ``auto`` on the CPU) and this checkout's ``cpu-template``, which has the same
model and objective (48x64x48, positional embedding, MSE, lambda 0.02, SmolLM2 layer called twice), in
fp32 and with ``train.precision=auto``.

Usage:
    python benchmarks/speed.py [--config cpu-default] [--rounds 10] [--baseline 5559755] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from llamareg.atomic import write_json
from llamareg.evaluation.report import write_text
from llamareg.training.precision import Precision, cpu_has_bf16_units

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "speed_worker.py"


@dataclass(frozen=True)
class Variant:
    label: str
    root: Path  # the checkout whose llamareg the worker imports
    preset: str
    precision: str  # fp32 or bf16
    layout: str = "contiguous"


class Worker:
    """A speed_worker.py process answering one JSON line per command."""

    def __init__(self, variant: Variant) -> None:
        environment = {**os.environ, "PYTHONPATH": str(variant.root)}
        self.process = subprocess.Popen([sys.executable, str(WORKER), variant.preset, variant.precision, variant.layout],
                                        cwd=variant.root, env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a speed worker exited early (code {self.process.wait()})")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def variants_for(args: argparse.Namespace, scratch: Path) -> list[Variant]:
    auto = Precision.resolve("auto", torch.device("cpu")).name
    if not args.baseline:
        return [Variant(f"{args.config} fp32", ROOT, args.config, "fp32"),
                Variant(f"{args.config} fp32 channels-last-3d", ROOT, args.config, "fp32", "channels_last"),
                Variant(f"{args.config} bf16 autocast", ROOT, args.config, "bf16")]
    worktree = scratch / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.baseline], check=True, capture_output=True)
    return [Variant(f"{args.baseline} cpu-default (fp32)", worktree, "cpu-default", "fp32"),
            Variant("this checkout, cpu-template, fp32", ROOT, "cpu-template", "fp32"),
            Variant(f"this checkout, cpu-template, train.precision=auto ({auto})", ROOT, "cpu-template", auto)]


def render(result: dict) -> str:
    lines = [
        f"# Training-step speed{' against ' + result['baseline'] if result['baseline'] else ''}",
        "",
        result["what"],
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; bf16 units: {result['bf16_units']}; torch {result['torch']}, {result['threads']} threads per worker; "
        f"written {result['written']}; `train.precision=auto` resolves to **{result['auto']}** on this CPU.",
        "",
        "| variant | median s per step | speed-up vs first row | loss | peak RSS MiB | forward convs on slow_conv3d / oneDNN | share of the step in slow_conv3d forward |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["variants"]:
        kernels = row["profile"]["kernels"]
        slow = kernels.get("aten::slow_conv3d_forward", {})
        fast = kernels.get("aten::mkldnn_convolution", {}).get("calls", 0)
        share = slow.get("self_ms", 0.0) / row["profile"]["total_ms"]
        lines.append(f"| {row['label']} | {row['median_seconds']:.3f} | {row['speedup']:.2f}x | {row['loss']:.6f} | "
                     f"{row['peak_rss_mib']:.0f} | {slow.get('calls', 0)} / {fast} | {100 * share:.0f} % |")
    lines += ["", "Profile of one step, convolution kernels (self CPU ms):", ""]
    for row in result["variants"]:
        kernels = ", ".join(f"{k.removeprefix('aten::')} {v['calls']} calls {v['self_ms']:.0f} ms" for k, v in row["profile"]["kernels"].items())
        lines.append(f"* {row['label']} ({row['profile']['total_ms']:.0f} ms in all): {kernels}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu-default", help="preset whose model, shape and objective are timed (without --baseline)")
    parser.add_argument("--baseline", metavar="COMMIT", help="time that commit's cpu-default against this checkout's cpu-template")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--out", default="benchmarks/results", help="results folder (speed.md and .json, or speed_vs_<commit>.*)")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        raise SystemExit("--rounds must be >= 3")
    with tempfile.TemporaryDirectory(prefix="llamareg-speed-") as scratch:
        variants = variants_for(args, Path(scratch))
        try:
            workers = [Worker(variant) for variant in variants]
            times: list[list[float]] = [[] for _ in variants]
            for _ in range(args.rounds):
                for index, worker in enumerate(workers):
                    times[index].append(worker.ask("step")["seconds"])
            profiles = [worker.ask("profile") for worker in workers]
            memory = [worker.ask("memory")["peak_rss_mib"] for worker in workers]
            for worker in workers:
                worker.close()
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(scratch) / "baseline")], capture_output=True)
    reference = statistics.median(times[0])
    rows = []
    for variant, worker, seconds, kernel_profile, peak in zip(variants, workers, times, profiles, memory):
        median = statistics.median(seconds)
        rows.append({"label": variant.label, "preset": variant.preset, "precision": variant.precision, "layout": variant.layout,
                     "median_seconds": median, "seconds": seconds, "speedup": reference / median, "loss": worker.ready["loss"],
                     "profile": kernel_profile, "peak_rss_mib": peak})
        print(f"{variant.label}: {median:.3f} s per step ({reference / median:.2f}x)", flush=True)
    result = {
        "what": (f"One training step (model from the factory, one pair of random volumes, the image objective, backward), "
                 f"{args.rounds} interleaved rounds after a warm-up, each variant in its own process; losses are of the same "
                 "pair and initial weights."),
        "baseline": args.baseline,
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "bf16_units": cpu_has_bf16_units(),
        "auto": Precision.resolve("auto", torch.device("cpu")).name,
        "torch": torch.__version__,
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "variants": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"speed_vs_{args.baseline}" if args.baseline else "speed"
    write_json(out / f"{stem}.json", result)
    write_text(out / f"{stem}.md", render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
