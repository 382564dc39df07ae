"""Training-step speed by precision and memory layout, interleaved in one run, with a kernel profile;
optionally against an earlier commit of llamareg, side by side.

One step is the trainer's: the model built by the factory, called on one pair, the image objective
(similarity + diffusion over the flows' scales) and backward. Each variant runs in a worker process
of its own (``speed_worker.py``), so that its peak resident memory is its own; within a group, rounds
interleave the workers (A, B, C, A, B, C, ...) so that drifts of the machine's load hit all of them
alike. The figure is the median step time; ratios are against the group's first row. The profile
counts the 3D convolutions by kernel (``slow_conv3d`` is PyTorch's reference kernel, ``mkldnn``
oneDNN) and the step's time in copies.

Groups:

* ``--config`` (default ``cpu-default``) at its own shape: fp32 and bf16 autocast (what
  ``train.precision=auto`` picks on CPUs with bf16 units), each in the contiguous and the
  channels-last layout (``model.memory_format``; ``--layout`` keeps one); with ``--compile`` also the
  ``train.precision=auto`` channels-last step through ``torch.compile`` (``train.compile=true``; the
  worker's warm-up step compiles it).
* ``paper-knee-3090`` at each of ``--paper-shapes`` (default 96x112x96) with a LLaMA-2-7B-shaped layer
  of random weights held in fp32 (``random:llama-2-7b``): fp32 in both layouts, and
  ``train.precision=auto`` channels-last (with the frozen layer stored in bf16 where ``auto`` is
  bf16); ``--paper-rounds`` rounds (default 3). Four 96x112x96 workers take about 16 GiB of memory;
  160x160x96 needs about 2.3x that.

With ``--official PATH`` (a checkout of MingR-Ma/llama_reg, never committed here) each paper-preset
group starts with the release's ``DualLLama`` at the same shape, fp32, with a LLaMA-2-7B-shaped layer
(``speed_worker.py`` says how), so this checkout's ratio to the release is measured side by side.

``--one-at-a-time`` starts each paper-preset variant's worker anew for each of its steps and closes it after, so only
one model is in memory at a time (160x160x96 on a machine with less than about 40 GiB); the rounds still
interleave the variants, and each timed step follows a warm-up step in the same process.

With ``--baseline COMMIT`` (for example 5559755; checked out in a temporary git worktree) each group
starts with that commit's row in fp32 (contiguous, its only layout): its ``cpu-default``, against
which this checkout times ``cpu-template``, the same model and objective (48x64x48, positional
embedding, MSE, lambda 0.02, SmolLM2 layer called twice); and its ``paper-knee-3090``.

Usage:
    python benchmarks/speed.py [--config cpu-default] [--rounds 10] [--paper-shapes 96x112x96,160x160x96]
        [--layout contiguous|channels_last] [--baseline 5559755] [--official PATH] [--one-at-a-time] [--compile]
        [--out benchmarks/results]
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


PAPER_OVERRIDES = ("llm.source=random:llama-2-7b", "llm.dtype=float32")
COPY_KERNELS = ("aten::copy_", "aten::cat")


@dataclass(frozen=True)
class Variant:
    label: str
    root: Path  # the checkout whose llamareg the worker imports
    preset: str
    precision: str  # fp32 or bf16
    layout: str = "contiguous"
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    title: str
    rounds: int
    variants: list[Variant]
    paper_size: bool = False  # --one-at-a-time applies to these groups


class Worker:
    """A speed_worker.py process answering one JSON line per command."""

    def __init__(self, variant: Variant) -> None:
        environment = {**os.environ, "PYTHONPATH": str(variant.root)}
        command = [sys.executable, str(WORKER), variant.preset, variant.precision, variant.layout, *variant.overrides]
        self.process = subprocess.Popen(
            command, cwd=variant.root, env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
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


def parse_shape(text: str) -> tuple[int, int, int]:
    sizes = text.lower().split("x")
    if len(sizes) != 3 or not all(size.isdigit() and int(size) > 0 and int(size) % 16 == 0 for size in sizes):
        raise SystemExit(f"--paper-shapes: '{text}' is not DxHxW with sizes divisible by 16, e.g. 96x112x96")
    return tuple(int(size) for size in sizes)


def groups_for(args: argparse.Namespace, baseline: Path | None) -> list[Group]:
    auto = Precision.resolve("auto", torch.device("cpu")).name
    layouts = [args.layout] if args.layout else ["contiguous", "channels_last"]
    preset = "cpu-template" if baseline else args.config
    variants = [
        Variant(f"{preset} {precision} {layout}", ROOT, preset, precision, layout) for precision in ("fp32", "bf16") for layout in layouts
    ]
    if args.compile:
        variants.append(
            Variant(f"{preset} {auto} {layouts[-1]} train.compile=true", ROOT, preset, auto, layouts[-1], ("train.compile=true",))
        )
    if baseline:
        variants.insert(0, Variant(f"{args.baseline} cpu-default fp32", baseline, "cpu-default", "fp32"))
    groups = [Group(f"{preset} at its shape" + (f" (against {args.baseline} cpu-default)" if baseline else ""), args.rounds, variants)]
    for shape in args.paper_shapes:
        overrides = (f"data.shape=[{', '.join(map(str, shape))}]", *PAPER_OVERRIDES)
        size = "x".join(map(str, shape))
        variants = [
            Variant(f"paper-knee-3090 {size} fp32 {layout}", ROOT, "paper-knee-3090", "fp32", layout, overrides) for layout in layouts
        ]
        # Under bf16 autocast the frozen layer is stored in bf16 (llm.dtype), as a user would: autocast would
        # otherwise cast its fp32 weights anew at every call (it caches casts of trainable weights only).
        auto_overrides = (*overrides, "llm.dtype=bfloat16") if auto == "bf16" else overrides
        auto_label = f"train.precision=auto ({auto}{', llm.dtype=bfloat16' if auto == 'bf16' else ''})"
        variants.append(
            Variant(f"paper-knee-3090 {size} {auto_label} {layouts[-1]}", ROOT, "paper-knee-3090", auto, layouts[-1], auto_overrides)
        )
        if baseline:
            variants.insert(
                0, Variant(f"{args.baseline} paper-knee-3090 {size} fp32", baseline, "paper-knee-3090", "fp32", "contiguous", overrides)
            )
        if args.official:
            variants.insert(
                0, Variant(f"official release DualLLama {size} fp32", ROOT, f"official={args.official}", "fp32", "contiguous", overrides)
            )
        groups.append(Group(f"paper-knee-3090 at {size}, LLaMA-2-7B-shaped layer", args.paper_rounds, variants, paper_size=True))
    return groups


def time_group(group: Group, one_at_a_time: bool = False) -> list[dict]:
    """Interleaved rounds of the group's workers, then one profiled step and the peak memory of each.

    With ``one_at_a_time`` each step gets a fresh worker (closed after it), so one model is in memory at a time.
    """
    count = len(group.variants)
    times: list[list[float]] = [[] for _ in range(count)]
    profiles, memory, losses = [None] * count, [None] * count, [None] * count
    workers = [] if one_at_a_time else [Worker(variant) for variant in group.variants]
    try:
        for round_index in range(group.rounds):
            for index, variant in enumerate(group.variants):
                worker = Worker(variant) if one_at_a_time else workers[index]
                times[index].append(worker.ask("step")["seconds"])
                losses[index] = worker.ready["loss"]
                if round_index == group.rounds - 1:
                    profiles[index] = worker.ask("profile")
                    memory[index] = worker.ask("memory")["peak_rss_mib"]
                if one_at_a_time:
                    worker.close()
    finally:
        for worker in workers:
            worker.close()
    reference = statistics.median(times[0])
    rows = []
    for variant, loss, seconds, kernel_profile, peak in zip(group.variants, losses, times, profiles, memory):
        median = statistics.median(seconds)
        rows.append(
            {
                "label": variant.label,
                "preset": variant.preset,
                "precision": variant.precision,
                "layout": variant.layout,
                "overrides": list(variant.overrides),
                "median_seconds": median,
                "seconds": seconds,
                "speedup": reference / median,
                "loss": loss,
                "profile": kernel_profile,
                "peak_rss_mib": peak,
            }
        )
        print(f"{variant.label}: {median:.3f} s per step ({reference / median:.2f}x)", flush=True)
    return rows


def render(result: dict) -> str:
    lines = [
        f"# Training-step speed{' against ' + result['baseline'] if result['baseline'] else ''}",
        "",
        result["what"],
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; bf16 units: {result['bf16_units']}; torch {result['torch']}, "
        f"{result['threads']} threads per worker; "
        f"written {result['written']}; `train.precision=auto` resolves to **{result['auto']}** on this CPU.",
    ]
    for group in result["groups"]:
        lines += [
            "",
            f"## {group['title']} ({group['rounds']} rounds)",
            "",
            "| variant | median s per step | speed-up vs first row | loss | peak RSS MiB | forward convs on slow_conv3d / oneDNN "
            "| share of the step in slow_conv3d forward | share in copies (copy_, cat) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in group["rows"]:
            kernels, total = row["profile"]["kernels"], row["profile"]["total_ms"]
            slow = kernels.get("aten::slow_conv3d_forward", {})
            fast = kernels.get("aten::mkldnn_convolution", {}).get("calls", 0)
            copies = sum(kernels.get(name, {}).get("self_ms", 0.0) for name in COPY_KERNELS)
            lines.append(
                f"| {row['label']} | {row['median_seconds']:.3f} | {row['speedup']:.2f}x | {row['loss']:.6f} | "
                f"{row['peak_rss_mib']:.0f} | {slow.get('calls', 0)} / {fast} | {100 * slow.get('self_ms', 0.0) / total:.0f} % | "
                f"{100 * copies / total:.0f} % |"
            )
        lines += ["", "Profile of one step (self CPU ms):", ""]
        for row in group["rows"]:
            kernels = ", ".join(
                f"{k.removeprefix('aten::')} {v['calls']} calls {v['self_ms']:.0f} ms" for k, v in row["profile"]["kernels"].items()
            )
            lines.append(f"* {row['label']} ({row['profile']['total_ms']:.0f} ms in all): {kernels}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu-default", help="preset of the first group (without --baseline)")
    parser.add_argument("--baseline", metavar="COMMIT", help="start each group with that commit's row")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds of the first group (default 10)")
    parser.add_argument(
        "--paper-shapes",
        type=lambda text: [parse_shape(t) for t in text.split(",") if t],
        default=[(96, 112, 96)],
        help="shapes of the paper-preset groups, comma-separated; '' for none (default 96x112x96)",
    )
    parser.add_argument("--paper-rounds", type=int, default=3, help="interleaved rounds of each paper-preset group (default 3)")
    parser.add_argument("--layout", choices=("contiguous", "channels_last"), help="time only this layout (default both)")
    parser.add_argument(
        "--compile", action="store_true", help="add the first group's auto-precision row under torch.compile (train.compile)"
    )
    parser.add_argument("--official", metavar="PATH", help="a MingR-Ma/llama_reg checkout: time its DualLLama in each paper-preset group")
    parser.add_argument(
        "--one-at-a-time", action="store_true", help="paper-preset groups: a fresh worker per step, one model in memory at a time"
    )
    parser.add_argument("--out", default="benchmarks/results", help="results folder (speed.md and .json, or speed_vs_<commit>.*)")
    args = parser.parse_args(argv)
    if args.rounds < 3 or args.paper_rounds < 1:
        raise SystemExit("--rounds must be >= 3 and --paper-rounds >= 1")
    with tempfile.TemporaryDirectory(prefix="llamareg-speed-") as scratch:
        baseline = None
        if args.baseline:
            baseline = Path(scratch) / "baseline"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline], check=True, capture_output=True
            )
        try:
            groups = [
                {"title": group.title, "rounds": group.rounds, "rows": time_group(group, args.one_at_a_time and group.paper_size)}
                for group in groups_for(args, baseline)
            ]
        finally:
            if baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], capture_output=True)
    result = {
        "what": (
            "One training step (model from the factory, one pair of random volumes, the image objective, backward), "
            "interleaved rounds after a warm-up, each variant in its own process; within a group, losses are of the same "
            "pair and initial weights."
        ),
        "baseline": args.baseline,
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "bf16_units": cpu_has_bf16_units(),
        "auto": Precision.resolve("auto", torch.device("cpu")).name,
        "torch": torch.__version__,
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "groups": groups,
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
