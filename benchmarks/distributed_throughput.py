"""Training throughput of the plain trainer against DeepSpeed ZeRO-2 with 1 and 2 ranks on the CPU, for
the same global batch.

Every case trains the cpu-default preset (32^3 synthetic pairs, real SmolLM2 layer) through
``launch/train.py`` with a global batch of 2 pairs per iteration, one after the other, in one run:

* ``plain``: ``python launch/train.py`` (no DeepSpeed), batch 2, all cores;
* ``deepspeed, 1 rank``: ``python launch/train.py --ds``, batch 2, all cores;
* ``deepspeed, 2 ranks``: ``deepspeed --num_accelerators 2 launch/train.py --ds``, batch 1 per rank.

Two more measurements show where the time of 2 ranks goes:

* ``plain-1-thread``: the plain trainer with one thread and batch 1, which is what each of the 2 ranks
  computes; it bounds the 2 ranks from below, before any communication;
* the gloo all-reduce of the trainable gradients (their count from the plain run's ``metrics.json``, in
  bf16 as DeepSpeed sends them), 2 processes with one thread each.

``plain / (plain-1-thread + all-reduce)`` is then the most 2 ranks can reach on this machine if
DeepSpeed itself cost nothing.

``OMP_NUM_THREADS`` is left unset, as a user would: each rank takes its share of the cores by itself
(:func:`llamareg.distributed.context.threads_per_rank`), and an fp16 DeepSpeed config trains in what
``train.precision=auto`` picks on this CPU. The figure is pairs per second of training (forward, loss,
backward, optimizer step, from ``train_seconds_per_iteration``). The ratios split the difference
between the plain trainer and 2 ranks into DeepSpeed's own cost (1 rank vs plain) and what splitting the
batch over ranks gains or loses (2 ranks vs 1 rank). Results go to
``benchmarks/results/distributed_throughput.md`` and ``.json``.

Usage:
    python benchmarks/distributed_throughput.py [--iters 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GLOBAL_BATCH = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _allreduce_worker(rank: int, port: int, elements: int, repeats: int, seconds: "torch.multiprocessing.SimpleQueue") -> None:  # noqa: F821 (torch is imported in the worker)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    gradients = torch.ones(elements, dtype=torch.bfloat16)
    dist.all_reduce(gradients)  # the first call sets up the connection
    dist.barrier()
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(gradients)
    if rank == 0:
        seconds.put((time.perf_counter() - start) / repeats)
    dist.destroy_process_group()


def allreduce_seconds(elements: int, repeats: int = 10) -> float:
    """Seconds of one gloo all-reduce of ``elements`` bf16 values between 2 local processes (1 thread each)."""
    import torch.multiprocessing as mp

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    seconds = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_allreduce_worker, args=(_free_port(), elements, repeats, seconds), nprocs=2)
    return seconds.get()


def measure(case: str, iterations: int, work: Path) -> dict:
    """Train ``iterations`` in one case (``plain``, ``plain-1-thread``, ``deepspeed-1``, ``deepspeed-2``);
    returns its figures."""
    ranks = 2 if case == "deepspeed-2" else 1
    batch = 1 if case == "plain-1-thread" else GLOBAL_BATCH // ranks
    out = work / case
    arguments = [
        "launch/train.py",
        "--max-iters",
        str(iterations),
        "--out",
        str(out),
        f"train.batch_size={batch}",
        f"train.val_every={iterations}",
        "train.checkpoint_every=0",
        "tracking.enabled=false",
    ]
    if case.startswith("deepspeed"):
        ds = json.loads((ROOT / "ds_configs" / "zero2.json").read_text())
        ds["train_micro_batch_size_per_gpu"] = "auto"  # the batch per rank differs between the cases
        ds_path = work / f"zero2-{case}.json"
        ds_path.write_text(json.dumps(ds))
        arguments[1:1] = ["--ds", str(ds_path)]
    environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if case == "plain-1-thread":
        environment["OMP_NUM_THREADS"] = "1"
    environment.update({"GLOO_SOCKET_IFNAME": "lo", "TORCH_EXTENSIONS_DIR": str(ROOT / ".cache" / "torch_extensions")})
    if ranks == 1:
        command = [sys.executable, *arguments]
    else:
        launcher = Path(sys.executable).parent / "deepspeed"
        command = [str(launcher), "--num_accelerators", str(ranks), "--master_port", str(_free_port()), *arguments]
    process = subprocess.run(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"{case} run failed:\n" + "\n".join(process.stdout.splitlines()[-20:]))
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = metrics["train_seconds_per_iteration"]
    threads = 1 if case == "plain-1-thread" else max(1, (os.cpu_count() or 1) // ranks)
    return {
        "case": case,
        "ranks": ranks,
        "batch_per_rank": batch,
        "threads_per_rank": threads,
        "seconds_per_iteration": seconds,
        "pairs_per_second": batch * ranks / seconds,
        "precision": metrics["precision"],
        "memory_format": metrics.get("memory_format"),
        "trainable_parameters": metrics["parameters"]["trainable"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=40, help="training iterations per case (default 40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cases = {case: measure(case, args.iters, Path(work)) for case in ("plain", "plain-1-thread", "deepspeed-1", "deepspeed-2")}
    allreduce = allreduce_seconds(cases["plain"]["trainable_parameters"])
    speed = {case: figures["pairs_per_second"] for case, figures in cases.items()}
    seconds = {case: figures["seconds_per_iteration"] for case, figures in cases.items()}
    ratios = {
        "deepspeed 2 ranks / plain": speed["deepspeed-2"] / speed["plain"],
        "deepspeed 1 rank / plain (DeepSpeed's own cost)": speed["deepspeed-1"] / speed["plain"],
        "deepspeed 2 ranks / 1 rank (splitting the batch)": speed["deepspeed-2"] / speed["deepspeed-1"],
        "ceiling of 2 ranks on this machine: plain / (plain-1-thread + all-reduce)": seconds["plain"]
        / (seconds["plain-1-thread"] + allreduce),
    }
    result = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "iterations": args.iters,
        "load_average_1min_at_end": os.getloadavg()[0],  # other work on the machine skews the cases
        "global_batch": GLOBAL_BATCH,
        "cases": list(cases.values()),
        "allreduce_seconds": allreduce,
        "ratios": ratios,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {c['case']} | {c['ranks']} | {c['batch_per_rank']} | {c['threads_per_rank']} | {c['precision']} "
        f"| {c['seconds_per_iteration']:.3f} "
        f"| {c['pairs_per_second']:.2f} |"
        for c in cases.values()
    )
    ratio_rows = "\n".join(f"| {name} | {value:.2f}x |" for name, value in ratios.items())
    (RESULTS / "distributed_throughput.md").write_text(
        f"# Training throughput: plain trainer vs DeepSpeed ZeRO-2, 1 and 2 ranks (CPU)\n\n"
        f"{result['date']}, {result['machine']}; cpu-default (32^3 synthetic pairs, SmolLM2 layer), global batch {GLOBAL_BATCH}, "
        f"{args.iters} iterations per case, run one after the other; `OMP_NUM_THREADS` unset (each rank takes cores / ranks "
        f"threads); load average {result['load_average_1min_at_end']:.1f} at the end. Command: "
        f"`python benchmarks/distributed_throughput.py --iters {args.iters}`.\n\n"
        "| case | ranks | batch per rank | threads per rank | precision | s / iteration | pairs / s |\n"
        f"|---|---|---|---|---|---|---|\n{rows}\n\n"
        f"gloo all-reduce of the {cases['plain']['trainable_parameters']:,} trainable gradients in bf16, 2 processes with one thread each: "
        f"{allreduce * 1000:.1f} ms.\n\n"
        f"| ratio of pairs per second | |\n|---|---|\n{ratio_rows}\n\n"
        f"Where an iteration of 2 ranks goes ({seconds['deepspeed-2'] * 1000:.0f} ms): one rank's own forward, backward and Adam "
        f"(plain-1-thread) {seconds['plain-1-thread'] * 1000:.0f} ms; the gradient all-reduce about {allreduce * 1000:.0f} ms; "
        f"the remaining {(seconds['deepspeed-2'] - seconds['plain-1-thread'] - allreduce) * 1000:.0f} ms are DeepSpeed's engine "
        f"(per-tensor overflow checks and gradient norms, copies into and out of its flat buffers) and the two processes "
        f"sharing the memory bandwidth.\n"
    )
    print("\n".join(f"{name}: {value:.2f}x" for name, value in ratios.items()))


if __name__ == "__main__":
    main()
