"""Same training time, two memory layouts: does the faster channels-last step train a better model?

Trains ``--config`` (default ``cpu-default``, the `make demo` recipe) twice for the same wall-clock
budget (``train.max_minutes``, the trainer's own clock, validation included), once with
``model.memory_format=contiguous`` and once with ``channels_last``, one after the other on an otherwise
idle machine; then registers the dev-test pairs (:mod:`llamareg.data.devtest`, anatomy no training or
validation pair used) with each run's ``best.pt`` (chosen on validation pairs only), network only as
``llamareg register`` does, next to identity in the same run. Reports the iterations each layout
reached and the paired Dice difference channels-last minus contiguous with its 95 % bootstrap
interval over pairs (one training seed each).

Usage:
    python benchmarks/layout_ab.py [--minutes 9.5] [--pairs 12] [--runs runs/layout-ab] [--out benchmarks/results/layout_ab]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from generalization import comparison, load_pairs, run_context, run_rows, score_identity, score_model, write_results
from llamareg.commands.train import run as train
from llamareg.config import load_config
from llamareg.data.devtest import write_devtest
from llamareg.inference.model_io import load_trained_model

LAYOUTS = ("contiguous", "channels_last")


def render(result: dict) -> str:
    lines = [
        f"# Same training time, two layouts: {result['config']}",
        "",
        result["what"],
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; torch {result['torch']}, {result['threads']} threads; written {result['written']}.",
        "",
        "| row | iterations in the budget | training minutes | best validation Dice (iteration) | dev-test Dice (mean ± sd) |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        run = result["runs"].get(row["row"])
        trained = (
            ("", "", "")
            if run is None
            else (str(run["iterations"]), f"{run['wall_seconds'] / 60:.1f}", f"{run['val_dice_best']:.4f} ({run['best_iteration']})")
        )
        lines.append(f"| {row['label']} | {trained[0]} | {trained[1]} | {trained[2]} | {row['dice_mean']:.4f} ± {row['dice_std']:.4f} |")
    lines += ["", "| comparison | mean paired difference | 95 % interval | verdict |", "|---|---|---|---|"]
    for item in result["comparisons"]:
        verdict = "higher" if item["low"] > 0 else "lower" if item["high"] < 0 else "no difference (interval includes 0)"
        lines.append(f"| {item['a']} minus {item['b']} | {item['mean']:+.4f} | [{item['low']:+.4f}, {item['high']:+.4f}] | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu-default", help="preset to train (default cpu-default)")
    parser.add_argument("--minutes", type=float, default=9.5, help="training budget of each run in minutes (default 9.5)")
    parser.add_argument("--pairs", type=int, default=12, help="dev-test pairs (default 12)")
    parser.add_argument("--runs", default="runs/layout-ab", help="folder of the two training runs (replaced)")
    parser.add_argument("--out", default="benchmarks/results/layout_ab", help="results folder")
    args = parser.parse_args(argv)
    if not args.minutes > 0 or args.pairs < 2:
        raise SystemExit("--minutes must be > 0 and --pairs >= 2")
    runs = {}
    for layout in LAYOUTS:
        out = Path(args.runs) / layout
        # A cap far above what the budget allows, so that the clock decides.
        config = load_config(
            args.config, [f"model.memory_format={layout}", f"train.max_minutes={args.minutes}", "train.max_iters=20000", f"train.out={out}"]
        )
        train(config, overwrite=True)
        runs[layout] = json.loads((out / "metrics.json").read_text())
        print(f"{layout}: {runs[layout]['iterations']} iterations in {runs[layout]['wall_seconds'] / 60:.1f} min", flush=True)
    with tempfile.TemporaryDirectory(prefix="llamareg-devtest-") as scratch:
        pairs = load_pairs(write_devtest(Path(scratch) / "devtest", args.pairs))
        models = {layout: load_trained_model(Path(args.runs) / layout / "checkpoints" / "best.pt", device="cpu") for layout in LAYOUTS}
        jobs = {"identity": ("identity (no registration)", lambda: score_identity(pairs))}
        for layout in LAYOUTS:
            jobs[layout] = (f"{args.config}, {layout}, {args.minutes:g} min", lambda layout=layout: score_model(models[layout], pairs))
        rows, records = run_rows(jobs)
    comparisons = [comparison(rows, "channels_last", "contiguous", "more iterations in the same time train a better model")]
    comparisons += [comparison(rows, layout, "identity", "beats identity") for layout in LAYOUTS]
    result = {
        "what": (
            f"{args.pairs} dev-test pairs (the MNI152 template under random smooth deformations of the seed stream 'devtest', "
            "scored on 100 grey/white-matter parcels; no training or validation pair used this anatomy, no checkpoint was "
            f"chosen on them). Each run trained `{args.config}` for {args.minutes:g} minutes of its own wall clock; best.pt "
            "by validation Dice. One training seed per layout."
        ),
        "config": args.config,
        **run_context(argv),
        "runs": {
            layout: {
                key: runs[layout][key]
                for key in (
                    "iterations",
                    "stopped_by",
                    "wall_seconds",
                    "val_dice_best",
                    "best_iteration",
                    "train_seconds_per_iteration",
                    "precision",
                    "memory_format",
                )
            }
            for layout in LAYOUTS
        },
        "rows": list(rows.values()),
        "comparisons": comparisons,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, "layout_ab", result, records, render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
