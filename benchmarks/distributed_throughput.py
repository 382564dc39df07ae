"""Training throughput of 1 rank vs 2 ranks under DeepSpeed ZeRO-2 on the CPU, for the same global batch.

Both cases train the cpu-default preset (48x64x48, real SmolLM2 layer) through ``launch/train.py --ds``
with a global batch of 2 pairs per iteration: one rank with batch 2 and 2 threads, or two ranks
(launched by ``deepspeed --num_accelerators 2``) with batch 1 and 1 thread each, so both use the
machine's cores. The figure is pairs per second of training (forward, loss, backward, ZeRO step,
from ``train_seconds_per_iteration``), and the ratio of 2 ranks to 1. Results go to
``benchmarks/results/distributed_throughput.md`` and ``.json``.

Usage:
    python benchmarks/distributed_throughput.py [--iters 20]
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
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GLOBAL_BATCH = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(ranks: int, iterations: int, work: Path) -> dict:
    """Train ``iterations`` with ``ranks`` ranks; returns seconds per iteration and pairs per second."""
    ds = json.loads((ROOT / "ds_configs" / "zero2.json").read_text())
    ds["train_micro_batch_size_per_gpu"] = "auto"  # the batch per rank differs between the two cases
    ds_path = work / f"zero2-{ranks}.json"
    ds_path.write_text(json.dumps(ds))
    out = work / f"ranks{ranks}"
    arguments = ["launch/train.py", "--ds", str(ds_path), "--max-iters", str(iterations), "--out", str(out),
                 f"train.batch_size={GLOBAL_BATCH // ranks}", f"train.val_every={iterations}", "tracking.enabled=false"]
    environment = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() // ranks), "GLOO_SOCKET_IFNAME": "lo",
                   "TORCH_EXTENSIONS_DIR": str(ROOT / ".cache" / "torch_extensions")}
    if ranks == 1:
        command = [sys.executable, *arguments]
    else:
        launcher = Path(sys.executable).parent / "deepspeed"
        command = [str(launcher), "--num_accelerators", str(ranks), "--master_port", str(_free_port()), *arguments]
    process = subprocess.run(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"{ranks}-rank run failed:\n" + "\n".join(process.stdout.splitlines()[-20:]))
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = metrics["train_seconds_per_iteration"]
    return {"ranks": ranks, "batch_per_rank": GLOBAL_BATCH // ranks, "threads_per_rank": int(environment["OMP_NUM_THREADS"]),
            "seconds_per_iteration": seconds, "pairs_per_second": GLOBAL_BATCH / seconds, "precision": metrics["precision"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20, help="training iterations per case (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cases = [measure(ranks, args.iters, Path(work)) for ranks in (1, 2)]
    ratio = cases[1]["pairs_per_second"] / cases[0]["pairs_per_second"]
    result = {"date": str(date.today()), "machine": f"{platform.machine()}, {os.cpu_count()} cores", "iterations": args.iters,
              "load_average_1min_at_end": os.getloadavg()[0],  # other work on the machine skews both cases
              "global_batch": GLOBAL_BATCH, "cases": cases, "throughput_ratio_2_vs_1": ratio}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {c['ranks']} | {c['batch_per_rank']} | {c['threads_per_rank']} | {c['seconds_per_iteration']:.2f} | {c['pairs_per_second']:.3f} |"
        for c in cases
    )
    (RESULTS / "distributed_throughput.md").write_text(
        f"# DeepSpeed ZeRO-2 throughput, 1 vs 2 ranks (CPU)\n\n"
        f"{result['date']}, {result['machine']}; cpu-default (48x64x48, SmolLM2 layer), global batch {GLOBAL_BATCH}, "
        f"{args.iters} iterations, precision {cases[0]['precision']} (DeepSpeed has no fp16 on this CPU); "
        f"load average {result['load_average_1min_at_end']:.1f} at the end.\n\n"
        f"| ranks | batch per rank | threads per rank | s / iteration | pairs / s |\n|---|---|---|---|---|\n{rows}\n\n"
        f"**2 ranks / 1 rank throughput: {ratio:.2f}x**\n"
    )
    print(f"2 ranks vs 1: {ratio:.2f}x throughput ({cases[1]['pairs_per_second']:.3f} vs {cases[0]['pairs_per_second']:.3f} pairs/s)")


if __name__ == "__main__":
    main()
