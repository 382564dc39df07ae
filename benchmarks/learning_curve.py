"""Go/no-go for a training recipe: dev-test Dice against training minutes, with identity and ANTs rows.

Trains a preset (default ``cpu-default``, the `make demo` recipe) in chunks of ``--chunk`` iterations
through the training command's own code path (``--resume`` between chunks, so the run is the one
`make demo` makes), and after each chunk registers the dev-test pairs (:mod:`llamareg.data.devtest`:
the MNI152 template under deformations of a seed stream no training or validation uses; synthetic
deformations of a template the model never saw, not inter-subject registration) with the chunk's
last checkpoint, as ``llamareg register`` does. Training stops at the first chunk boundary past
``--minutes`` of training wall time (the trainer's own clock, validation included) or at the preset's
``train.max_iters``. Identity and ANTs SyN (``SyNOnly``, default iterations) are rows of the same run.

The verdict is "go" when the last chunk beats identity (95 % bootstrap interval of the paired Dice
difference above 0) and "no-go" otherwise. No checkpoint is chosen on the dev-test pairs: the curve
reads each chunk's last checkpoint, not the best one.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/learning_curve.py --out benchmarks/results/learning_curve \\
        [--config cpu-default] [--minutes 10] [--chunk 200] [--pairs 12] [--no-ants]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from generalization import comparison, load_pairs, run_context, score_ants, score_identity, score_model, summarise_row, write_results
from llamareg.commands.train import run as train
from llamareg.config import load_config
from llamareg.data.devtest import write_devtest
from llamareg.inference.model_io import load_trained_model
from llamareg.training.optimization import LAST_FILE


def render(result: dict) -> str:
    lines = [
        f"# Learning curve: {result['config']} on the dev-test pairs",
        "",
        result["what"],
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; torch {result['torch']}, {result['threads']} threads; written {result['written']}.",
        "",
        f"**Verdict: {result['verdict']}** ({result['verdict_reason']}).",
        "",
        "| row | iterations | training minutes | dev-test Dice (mean ± sd) | minus identity | 95 % interval | % det J <= 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        difference = row.get("minus_identity")
        diff = "" if difference is None else f"{difference['mean']:+.4f}"
        interval = "" if difference is None else f"[{difference['low']:+.4f}, {difference['high']:+.4f}]"
        minutes = "" if row["minutes"] is None else f"{row['minutes']:.1f}"
        iterations = "" if row["iterations"] is None else str(row["iterations"])
        folding = "" if row["folding_pct"] is None else f"{row['folding_pct']:.3f}"
        lines.append(
            f"| {row['label']} | {iterations} | {minutes} | {row['dice_mean']:.4f} ± {row['dice_std']:.4f} "
            f"| {diff} | {interval} | {folding} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="results folder (learning_curve.md, .json, _pairs.csv)")
    parser.add_argument("--config", default="cpu-default", help="preset or YAML of the recipe (default cpu-default)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall minutes to stop after (default 10)")
    parser.add_argument("--chunk", type=int, default=200, help="iterations between dev-test evaluations (default 200)")
    parser.add_argument("--pairs", type=int, default=12, help="dev-test pairs (default 12)")
    parser.add_argument("--run", help="training folder (default: a temporary one); must not hold a run yet")
    parser.add_argument("--no-ants", action="store_true", help="leave out the ANTs row (antspyx not installed)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.chunk < 1 or args.pairs < 2:
        raise SystemExit("--minutes must be > 0, --chunk >= 1 and --pairs >= 2")
    if args.run and Path(args.run).exists() and any(Path(args.run).iterdir()):
        raise SystemExit(f"--run {args.run}: folder is not empty; give a new folder so that no earlier run is resumed or overwritten")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="llamareg-curve-") as scratch:
        scratch = Path(scratch)
        run_dir = Path(args.run) if args.run else scratch / "run"
        base = load_config(args.config, [f"train.out={run_dir}"])
        pairs = load_pairs(write_devtest(scratch / "devtest", args.pairs))
        records = {"identity": score_identity(pairs)}
        rows = [{**summarise_row("identity", "identity (no registration)", records["identity"]), "iterations": None, "minutes": None}]
        if not args.no_ants:
            records["ants-default"] = score_ants(pairs, None)
            rows.append(
                {
                    **summarise_row("ants-default", "ANTs SyN (SyNOnly, default 40/20/0)", records["ants-default"]),
                    "iterations": None,
                    "minutes": None,
                }
            )
        print(f"identity {rows[0]['dice_mean']:.4f}" + ("" if args.no_ants else f", ANTs default {rows[1]['dice_mean']:.4f}"), flush=True)
        iterations, minutes = 0, 0.0
        while iterations < base.train.max_iters and minutes < args.minutes:
            iterations = min(iterations + args.chunk, base.train.max_iters)
            config = load_config(args.config, [f"train.out={run_dir}", f"train.max_iters={iterations}"])
            metrics = train(config, resume=iterations > args.chunk)
            minutes = metrics["wall_seconds"] / 60
            model = load_trained_model(run_dir / "checkpoints" / LAST_FILE, device="cpu")
            name = f"it{iterations}"
            records[name] = score_model(model, pairs)
            row = {
                **summarise_row(name, f"{args.config} after {iterations} iterations", records[name]),
                "iterations": iterations,
                "minutes": minutes,
                "val_dice": metrics["val_dice"],
            }
            row["minus_identity"] = comparison({"a": row, "identity": rows[0]}, "a", "identity", "beats identity")
            rows.append(row)
            print(
                f"{iterations} iterations, {minutes:.1f} min: dev-test Dice {row['dice_mean']:.4f} "
                f"({row['minus_identity']['mean']:+.4f} vs identity), validation Dice {metrics['val_dice']:.4f}",
                flush=True,
            )
    last = rows[-1]
    if "minus_identity" not in last:
        raise SystemExit("no training chunk ran: check --minutes and the preset's train.max_iters")
    beats = last["minus_identity"]["low"] > 0
    result = {
        "what": (
            f"{args.pairs} dev-test pairs (MNI152 under random smooth deformations and intensity changes of the seed stream "
            "'devtest', 2 mm, 100 grey/white-matter parcels): synthetic deformations of a template the model never trained or "
            f"validated on. `{args.config}` trained in chunks of {args.chunk} iterations; each row registers the pairs with the "
            "chunk's last checkpoint (network only, as `llamareg register`). Training minutes are the trainer's wall clock, "
            "validation included, LLM loading and dev-test scoring excluded."
        ),
        "config": args.config,
        **run_context(argv),
        "verdict": "go" if beats else "no-go",
        "verdict_reason": (
            f"after {last['iterations']} iterations ({last['minutes']:.1f} min) the model "
            f"{'beats' if beats else 'does not beat'} identity: {last['minus_identity']['mean']:+.4f} "
            f"[{last['minus_identity']['low']:+.4f}, {last['minus_identity']['high']:+.4f}]"
        ),
        "rows": rows,
    }
    write_results(out, "learning_curve", result, records, render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
