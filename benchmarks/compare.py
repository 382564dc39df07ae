"""Every method trained for the same budget with several seeds, each scored on anatomy no training or
validation pair used, with identity and ANTs SyN as rows and paired statistics between methods.

Learned methods train through ``llamareg.commands.train.run`` (preset ``cpu-<name>``, or ``--data``) with
``train.seed`` 0, 1, ..., validating ``--validations`` times per phase; each run's ``best.pt`` (its best
point on its validation pairs) is loaded with ``load_trained_model`` and registers the test pairs as
``llamareg register`` does: a shard folder's ``test_pairs.json``, else the dev-test set (a seed stream no
training or validation pair uses). Schedules split the budget: LapIRN in its release's proportions,
three LLaMA-Reg steps as cpu-cascade. Writes ``table.md`` (mean +- sd across seeds; each run's
validation curve and kept checkpoint; comparisons by ``seed_pooled_difference``), ``results.json``,
``pairs.csv`` and ``runs/<method>/seed<k>/`` (its ``result.json`` is kept in git; a finished run is reused while
its resolved config and settings are unchanged).

Usage:
    python benchmarks/compare.py --out DIR [--iters N] [--validations 4] [--seeds 3] [--pairs 12] [--methods identity llamareg ...]
    python benchmarks/compare.py --out DIR --tiny    # seconds: tiny networks, 2 seeds, 2 pairs (the suite runs it)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from llamareg.atomic import write_json
from llamareg.commands.train import run
from llamareg.config import load_config
from llamareg.data.devtest import write_devtest
from llamareg.evaluation.report import write_text
from llamareg.evaluation.scoring import load_pairs, score_ants, score_identity, score_model
from llamareg.evaluation.statistics import seed_pooled_difference
from llamareg.inference.model_io import load_trained_model

# method -> (table label, preset; None for the methods that do not train)
METHODS: dict[str, tuple[str, str | None]] = {
    "identity": ("Identity (no registration)", None),
    "ants-syn": ("ANTs SyN (antspyx, SyNOnly 100/70/50)", None),
    "voxelmorph": ("VoxelMorph", "cpu-voxelmorph"),
    "lapirn": ("LapIRN", "cpu-lapirn"),
    "transmorph": ("TransMorph", "cpu-transmorph"),
    "transmatch": ("TransMatch", "cpu-transmatch"),
    "llamareg": ("LLaMA-Reg, 1 step", "cpu-default"),
    "llamareg-3steps": ("LLaMA-Reg, 3 steps (step by step)", "cpu-cascade"),
    # The paper's ablations (benchmarks/ablation.py), each against "llamareg" (pretrained layers, frozen).
    "llamareg-random-frozen": ("LLaMA-Reg, random LLM layers, frozen", "cpu-random-llm"),
    "llamareg-random-trained": ("LLaMA-Reg, random LLM layers, trained", "cpu-random-llm-trained"),
    "llamareg-vit": ("LLaMA-Reg, ViT blocks instead of the LLM", "cpu-vit"),
    "llamareg-posemb": ("LLaMA-Reg, with positional embedding", "cpu-posemb"),
    "llamareg-inner-x4": ("LLaMA-Reg, inner adapter x4", "cpu-inner-x4"),
}
ANTS_ITERATIONS = (100, 70, 50)
PHASE_SHARES = {"lapirn": (30000, 2000, 28000, 2000, 58000), "llamareg-3steps": (450, 150, 150)}
TINY = [
    "data.shape=[32, 32, 32]",
    "model.base_channels=4",
    "model.adapter_width=32",
    "model.inner_adapter_width=32",
    "llm.source=random:smollm2-135m",
    "data.num_val_pairs=2",
]


def split_budget(total: int, shares: Sequence[float]) -> list[int]:
    """``total`` iterations split in proportion to ``shares`` (largest remainders), each phase at least 1.

    Example:
        >>> split_budget(150, (450, 150, 150)), split_budget(120, (30000, 2000, 28000, 2000, 58000))
        ([90, 30, 30], [30, 2, 28, 2, 58])
    """
    if total < len(shares):
        raise ValueError(f"--iters {total} is fewer than the schedule's {len(shares)} phases")
    exact = [total * share / sum(shares) for share in shares]
    counts = [max(1, math.floor(x)) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True)
    for index in range(total - sum(counts)):
        counts[order[index % len(order)]] += 1
    while sum(counts) > total:
        counts[counts.index(max(counts))] -= 1
    return counts


def method_overrides(
    method: str, iters: int, validations: int, folder: Path, seed: int, data: str | None, extra: Sequence[str] = ()
) -> list[str]:
    """One training run's config overrides: output folder, seed, budget (split over phases), how often it
    validates (``validations`` times in each phase, the longest phase setting the interval), data."""
    # fp32 for every method: bf16 autocast (precision=auto on CPUs with bf16 units) is measured for LLaMA-Reg only.
    overrides = [f"train.out={json.dumps(str(folder))}", f"train.seed={seed}", "tracking.enabled=false", "train.precision=fp32"]
    phases = split_budget(iters, PHASE_SHARES[method]) if method in PHASE_SHARES else [iters]
    overrides += [f"train.val_every={max(1, math.ceil(max(phases) / validations))}", f"train.max_iters={max(phases)}"]
    if method in PHASE_SHARES:
        overrides.append(f"train.step_iters={phases}")
    if data is not None:
        overrides.append(f"data.source={json.dumps(str(Path(data).resolve()))}")
    return overrides + list(extra)


def validation_curve(phases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``curve``: ``[[iteration, validation Dice], ...]`` over every phase, iterations counted from the run's
    start (a phase's own count starts at 0 with the model the previous phase chose); ``kept_iteration``:
    the iteration, so counted, of the checkpoint the run kept (the last phase's best)."""
    curve, done = [], 0
    for phase in phases:
        curve += [[done + iteration, dice] for iteration, dice in phase["validation_curve"]]
        done += phase["iterations"]
    return {"curve": curve, "kept_iteration": done - phases[-1]["iterations"] + phases[-1]["best_iteration"]}


def test_pairs(out: Path, count: int, data: str | None) -> Path:
    """The pair list every method is scored on: a shard folder's test pairs, else ``count`` dev-test pairs."""
    if data is not None:
        path = Path(data) / "test_pairs.json"
        if not path.is_file():
            raise ValueError(f"--data {data} has no test_pairs.json; rebuild it with a test split (data_tools/build_shards.py)")
        return path
    listed = out / "devtest" / "pairs.json"
    if listed.is_file() and len(json.loads(listed.read_text())) == count:
        return listed
    return write_devtest(out / "devtest", count)


def train_and_score(method: str, seed: int, args: argparse.Namespace, pairs, extra: Sequence[str]) -> dict[str, Any]:
    """Train one method with one seed (or reuse a finished run) and score its best checkpoint."""
    folder = args.out / "runs" / method / f"seed{seed}"
    config = load_config(METHODS[method][1], method_overrides(method, args.iters, args.validations, folder, seed, args.data, extra))
    # The resolved config is part of the key: a preset whose defaults changed since the run trains again.
    resolved = config.to_dict()
    resolved["train"].pop("out")
    settings = {"iters": args.iters, "validations": args.validations, "data": args.data, "extra": list(extra), "pairs": len(pairs)}
    settings["config"] = resolved
    result_file = folder / "result.json"
    if result_file.is_file() and json.loads(result_file.read_text())["settings"] == settings:
        return json.loads(result_file.read_text())
    metrics = run(config, overwrite=True)
    phases = metrics.get("steps") or [metrics]
    iterations = sum(phase["iterations"] for phase in phases)
    trained = load_trained_model(folder / "checkpoints" / "best.pt", device="cpu")
    result = {
        "settings": settings,
        "records": score_model(trained, pairs),
        "train_seconds_per_iteration": sum(p["train_seconds_per_iteration"] * p["iterations"] for p in phases) / max(iterations, 1),
        "validation_dice": [phase.get("val_dice_best") for phase in phases],
        "validation": validation_curve(phases),
    }
    write_json(result_file, result)
    return result


def score_methods(args: argparse.Namespace, extra: Sequence[str]) -> tuple[dict, dict[str, str], dict, dict]:
    """``{method: {seed: per-pair records}}`` (one seed, 0, for identity and ANTs), statuses, timings and
    the learned methods' validation records ``{method: {seed: {"curve": [[iteration, Dice], ...], "kept_iteration": k}}}``."""
    pairs = load_pairs(args.pairs_path)
    scores, status, training, curves = {}, {}, {}, {}
    for method in args.methods:
        started = time.perf_counter()
        if method == "identity":
            scores[method] = {0: score_identity(pairs)}
        elif method == "ants-syn":
            try:
                scores[method] = {0: score_ants(pairs, ANTS_ITERATIONS)}
            except ImportError as error:
                status[method] = f"not installed ({error})"
        else:
            results = {seed: train_and_score(method, seed, args, pairs, extra) for seed in range(args.seeds)}
            scores[method] = {seed: result["records"] for seed, result in results.items()}
            training[method] = float(np.mean([result["train_seconds_per_iteration"] for result in results.values()]))
            # The ablation study's runs (--validations 1) were trained before curves were recorded.
            curves[method] = {seed: result["validation"] for seed, result in results.items() if "validation" in result}
        print(f"{method}: {status.get(method, 'ok')} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return scores, status, training, curves


def dice_array(records: dict[int, list[dict]]) -> np.ndarray:
    """``(seeds, pairs)`` mean Dice."""
    return np.array([[record["dice"] for record in records[seed]] for seed in sorted(records)])


def comparisons(scores: dict[str, dict[int, list[dict]]], reference: str | None = None) -> list[dict[str, Any]]:
    """Every learned method against identity and ANTs SyN; then every other learned method against
    ``reference`` if given, else LLaMA-Reg against every other learned method."""
    learned = [m for m in scores if METHODS[m][1] is not None]
    wanted = [(m, ref) for m in learned for ref in ("identity", "ants-syn") if ref in scores]
    if reference is not None:
        wanted += [(m, reference) for m in learned if m != reference]
    else:
        wanted += [(m, other) for m in learned if m.startswith("llamareg") for other in learned if not other.startswith("llamareg")]
    results = {(a, b): seed_pooled_difference(dice_array(scores[a]), dice_array(scores[b])) for a, b in wanted}
    keys = ("mean", "low", "high", "p_wilcoxon", "verdict")
    return [{"a": a, "b": b, **{key: getattr(result, key) for key in keys}} for (a, b), result in results.items()]


def curve_table(curves: dict[str, dict[int, dict]], args: argparse.Namespace) -> list[str]:
    """Each learned run's validation curve, a row per method and seed, and the checkpoint it kept."""
    lines = [
        f"Validation curves ({args.validations} validations per phase, on each run's validation pairs, never the test pairs): "
        "iteration: validation Dice; ` / ` starts the next phase of a schedule (its first point is the model it starts "
        "from); the kept checkpoint is the last phase's best point on the validation pairs.",
        "",
        "| Method | seed | validation Dice by iteration | kept checkpoint (iteration) |",
        "|---|---|---|---|",
    ]
    for method, seeds in curves.items():
        for seed, validation in sorted(seeds.items()):
            iterations = [int(iteration) for iteration, _ in validation["curve"]]
            cells = [f"{iteration}: {dice:.3f}" for iteration, (_, dice) in zip(iterations, validation["curve"])]
            joints = [" / " if now == before else " · " for now, before in zip(iterations[1:], iterations)]
            text = cells[0] + "".join(joint + cell for joint, cell in zip(joints, cells[1:]))
            lines.append(f"| {METHODS[method][0]} | {seed} | {text} | {validation['kept_iteration']} |")
    return lines


def render(scores, status, training, curves, rows, args: argparse.Namespace, pairs_path: str) -> str:
    """The Markdown report: how it was made, the method table and the comparisons."""
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()} ({platform.processor() or 'CPU'}) "
        f"by `python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`: {args.iters} training iterations per method and seed, "
        f"seeds 0..{args.seeds - 1}, each run's checkpoint chosen on its validation pairs; scored on {pairs_path} "
        "(anatomy no training or validation pair used), network only, as `llamareg register` registers.",
        "",
        "| Method | seeds | Dice (mean ± sd across seeds) | % det J <= 0 | s / pair | train s / iter |",
        "|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        if method in status:
            lines.append(f"| {METHODS[method][0]} | | {status[method]} | | | |")
            continue
        dice = dice_array(scores[method]).mean(axis=1)
        records = [record for seed_records in scores[method].values() for record in seed_records]
        folding = [r["folding_pct"] for r in records if r["folding_pct"] is not None]
        lines.append(
            f"| {METHODS[method][0]} | {len(dice)} | {dice.mean():.4f} ± {dice.std(ddof=1) if len(dice) > 1 else 0:.4f} | "
            f"{np.mean(folding) if folding else float('nan'):.3f} | {np.mean([r['seconds'] for r in records]):.2f} | "
            f"{training.get(method, float('nan')):.2f} |"
        )
    lines += ["", *curve_table(curves, args)]
    lines += [
        "",
        "| comparison (a - b) | pooled mean difference | 95 % interval (seeds and pairs) | Wilcoxon p | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {METHODS[r['a']][0]} - {METHODS[r['b']][0]} | {r['mean']:+.4f} | [{r['low']:+.4f}, {r['high']:+.4f}] | "
        f"{r['p_wilcoxon']:.2g} | {r['verdict']} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--iters", type=int, default=150, help="training iterations per method and seed (default 150)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per learned method (default 3)")
    parser.add_argument("--validations", type=int, default=4, help="validations per training phase (default 4): the curves")
    parser.add_argument("--pairs", type=int, default=12, help="dev-test pairs when --data is not given (default 12)")
    parser.add_argument("--data", metavar="SHARD_DIR", help="shard folder: train on it, score its test pairs")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="rows (default: all)")
    parser.add_argument("--reference", choices=list(METHODS), help="compare every other learned method with this one")
    parser.add_argument("--set", nargs="*", default=[], metavar="section.key=value", help="overrides for every learned method")
    parser.add_argument("--tiny", action="store_true", help="tiny networks, 2 iterations, 2 seeds, 2 pairs: a check that it runs")
    args = parser.parse_args(argv)
    extra = list(args.set)
    if args.tiny:
        args.iters, args.seeds, args.pairs, extra = 5, 2, 2, TINY + extra
    if args.seeds < 1 or args.validations < 1 or args.pairs < 2 or args.reference not in (None, *args.methods):
        parser.error("--seeds and --validations must be >= 1, --pairs >= 2 (a paired interval needs 2), --reference one of --methods")
    args.pairs_path = test_pairs(args.out, args.pairs, args.data)
    scores, status, training, curves = score_methods(args, extra)
    rows = comparisons(scores, args.reference)
    report = render(scores, status, training, curves, rows, args, str(args.pairs_path))
    write_text(args.out / "table.md", report)
    results = {"pairs": str(args.pairs_path), "iters": args.iters, "validations": args.validations, "seeds": args.seeds}
    results |= {"status": status, "scores": scores, "train_seconds_per_iteration": training, "validation_curves": curves}
    write_json(args.out / "results.json", {**results, "comparisons": rows})
    with open(args.out / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "seed", "pair", "dice", "folding_pct", "seconds"])
        for method, seeds in scores.items():
            for seed, records in seeds.items():
                writer.writerows([method, seed, index, r["dice"], r["folding_pct"], r["seconds"]] for index, r in enumerate(records))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
