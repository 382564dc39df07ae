"""Generalization: trained models on anatomy they never saw, next to identity and ANTs SyN, in one run.

The dev-test pairs (:mod:`llamareg.data.devtest`) are the MNI152 template under random deformations and
intensity changes from a seed stream no training or validation uses, scored on about 100 grey/white-
matter parcels at 2 mm: synthetic deformations of a template the models never saw, not inter-subject
registration. No checkpoint is chosen on them. Every row registers the same pairs through the same
files (`llamareg register`'s code path for the models), and every comparison is the paired difference
of per-pair Dice with its bootstrap 95 % interval and Wilcoxon p-value: "beats" means the interval lies
above 0. Time per pair is what `registration.json` reports (loaded voxels to outputs) for the models,
and the `ants.registration` call plus warping the labels for ANTs.

Self-registration: a dev-test image registered to itself at 2 mm, at 1 mm, cropped and zero-padded;
mean |u| inside the brain in voxels of the image's own grid, and Dice of the labels warped onto
themselves.

With ``--cascade RUN`` (a step-by-step cascade's training folder, e.g. ``runs/cpu-cascade``) its step 1
and step 3 models (each ``step<k>/checkpoints/best.pt``, chosen on validation pairs) are rows too, and
step 3 minus step 1 is compared.

Usage:
    python benchmarks/generalization.py [--out benchmarks/results] \\
        [--demo runs/cpu-default/checkpoints/best.pt] [--cascade runs/cpu-cascade] [--pairs 16] [--refine 100]

The shipped model (llamareg/pretrained/) is always evaluated when the installation has one.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from llamareg.atomic import write_json
from llamareg.data.devtest import devtest_template, write_devtest
from llamareg.data.nifti import write_nifti
from llamareg.evaluation.pair_metrics import voxel_displacement
from llamareg.evaluation.report import write_text
from llamareg.evaluation.scoring import load_pairs, mean_dice, score_ants, score_identity, score_model
from llamareg.evaluation.statistics import paired_difference
from llamareg.inference.model_io import TrainedModel, load_trained_model
from llamareg.data.pair_list import PairPaths
from llamareg.inference.pair_files import check_pair, load_pair
from llamareg.inference.registration import register_pair

ANTS_ROWS = {
    "ants-default": ("ANTs SyN (SyNOnly, default 40/20/0)", None),
    "ants-100-70-50": ("ANTs SyN (SyNOnly, 100/70/50)", (100, 70, 50)),
}
SELF_BRAIN_LABELS_MIN = 1


def cascade_checkpoints(run: Path) -> dict[int, Path]:
    """Step 1's and the last step's best checkpoints of a step-by-step cascade's training folder."""
    steps = sorted(int(folder.name[4:]) for folder in run.glob("step*") if folder.name[4:].isdigit())
    if len(steps) < 2:
        raise SystemExit(f"--cascade {run}: no step1/ ... step<k>/ folders of a step-by-step cascade (train it with --config cpu-cascade)")
    checkpoints = {step: run / f"step{step}" / "checkpoints" / "best.pt" for step in (steps[0], steps[-1])}
    for step, path in checkpoints.items():
        if not path.is_file():
            raise SystemExit(f"--cascade {run}: step {step} has no {path.relative_to(run)} (has the cascade finished training?)")
    return checkpoints


# ------------------------------------------------------------------------------------------ self-registration
def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    return write_nifti(path, array, affine)


def self_registration_copies(folder: Path) -> dict[str, tuple[Path, Path]]:
    """The template (never trained on) at 2 mm and 1 mm, cropped and padded, as NIfTI image/label files."""
    copies = {}
    for name, shape, spacing in (("2 mm", (80, 96, 80), 2.0), ("1 mm", (160, 192, 160), 1.0)):
        volume = devtest_template(shape, spacing)
        tag = name.replace(" ", "")
        affine = volume.affine.numpy()
        copies[name] = (
            _save(volume.image[0].numpy(), affine, folder / f"self_{tag}_image.nii.gz"),
            _save(volume.labels[0].numpy().astype(np.int16), affine, folder / f"self_{tag}_labels.nii.gz"),
        )
        if spacing == 2.0:
            image, labels = volume.image[0].numpy(), volume.labels[0].numpy().astype(np.int16)
            crop = (slice(6, -2), slice(4, -10), slice(0, -8))
            cropped_affine = affine.copy()
            cropped_affine[:3, 3] = affine[:3, :3] @ np.array([6, 4, 0]) + affine[:3, 3]
            copies["2 mm, cropped"] = (
                _save(image[crop], cropped_affine, folder / "self_cropped_image.nii.gz"),
                _save(labels[crop], cropped_affine, folder / "self_cropped_labels.nii.gz"),
            )
            pad = ((12, 12), (8, 16), (10, 10))
            padded_affine = affine.copy()
            padded_affine[:3, 3] = affine[:3, :3] @ -np.array([12, 8, 10]) + affine[:3, 3]
            copies["2 mm, padded"] = (
                _save(np.pad(image, pad), padded_affine, folder / "self_padded_image.nii.gz"),
                _save(np.pad(labels, pad), padded_affine, folder / "self_padded_labels.nii.gz"),
            )
    return copies


def score_self_registration(trained: TrainedModel, copies: dict[str, tuple[Path, Path]]) -> list[dict]:
    records = []
    for name, (image, labels) in copies.items():
        pair = PairPaths(fixed=image, moving=image, moving_labels=labels)
        loaded = load_pair(pair, check_pair(pair))
        registration = register_pair(trained, loaded.fixed, loaded.moving, loaded.moving_labels)
        voxels = voxel_displacement(registration.displacement, loaded.fixed.affine)[0].norm(dim=0).numpy()
        brain = loaded.moving_labels.data >= SELF_BRAIN_LABELS_MIN
        records.append(
            {
                "copy": name,
                "shape": list(loaded.fixed.shape),
                "mean_abs_u_voxels": float(voxels[brain].mean()),
                "dice": mean_dice(registration.warped_labels, loaded.moving_labels.data, loaded.moving_labels.data),
                "seconds": registration.seconds,
            }
        )
    return records


# ------------------------------------------------------------------------------------------ report
def summarise_row(name: str, label: str, records: list[dict]) -> dict:
    dice = np.array([r["dice"] for r in records])
    folding = [r["folding_pct"] for r in records if r["folding_pct"] is not None]
    network = [r["network_seconds"] for r in records if "network_seconds" in r]
    return {
        "row": name,
        "label": label,
        "dice_mean": float(dice.mean()),
        "dice_std": float(dice.std(ddof=1)),
        "seconds_per_pair": float(np.mean([r["seconds"] for r in records])),
        "network_seconds_per_pair": float(np.mean(network)) if network else None,
        "folding_pct": float(np.mean(folding)) if folding else None,
        "per_pair": [r["dice"] for r in records],
    }


def comparison(rows: dict[str, dict], a: str, b: str, claim: str) -> dict:
    result = paired_difference(rows[a]["per_pair"], rows[b]["per_pair"])
    return {"a": a, "b": b, "claim": claim, **result.to_dict()}


def render(result: dict) -> str:
    lines = [
        "# Generalization to unseen anatomy (dev-test)",
        "",
        result["what"],
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}; torch {result['torch']}, {result['threads']} threads; ANTs threads: {result['ants_threads']}; "
        f"written {result['written']}.",
        "",
        "| method | Dice (mean ± sd over pairs) | % det J <= 0 | seconds per pair | of which network |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"].values():
        folding = "" if row["folding_pct"] is None else f"{row['folding_pct']:.3f}"
        network = "" if row["network_seconds_per_pair"] is None else f"{row['network_seconds_per_pair']:.2f}"
        lines.append(
            f"| {row['label']} | {row['dice_mean']:.4f} ± {row['dice_std']:.4f} | {folding} | {row['seconds_per_pair']:.2f} | {network} |"
        )
    lines += [
        "",
        "Paired differences of per-pair Dice (a - b), bootstrap 95 % interval over pairs, Wilcoxon signed-rank p:",
        "",
        "| a | b | mean | 95 % interval | p | verdict | claim |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in result["comparisons"]:
        rows = result["rows"]
        lines.append(
            f"| {rows[item['a']]['label']} | {rows[item['b']]['label']} | {item['mean']:+.4f} | "
            f"[{item['low']:+.4f}, {item['high']:+.4f}] | {item['p_wilcoxon']:.2g} | {item['verdict']} | {item['claim']} |"
        )
    if result.get("time_ratios"):
        lines += ["", "Time ratios (same run): " + "; ".join(f"{k}: {v:.3f}" for k, v in result["time_ratios"].items())]
    if result.get("self_registration"):
        lines += [
            "",
            f"Self-registration ({result['self_model']}): an image registered to itself.",
            "",
            "| copy | shape | mean \\|u\\| in the brain (voxels) | Dice | seconds |",
            "|---|---|---|---|---|",
        ]
        for item in result["self_registration"]:
            lines.append(
                f"| {item['copy']} | {'x'.join(map(str, item['shape']))} | {item['mean_abs_u_voxels']:.3f} | {item['dice']:.4f} "
                f"| {item['seconds']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def card_entries(result: dict, report: Path) -> dict[str, str]:
    """Model-card entries (label -> text) of the rows and the comparisons that involve the shipped model."""
    rows = result["rows"]
    entries = {
        f"dev-test Dice, {row['label']}": f"{row['dice_mean']:.4f}"
        for name, row in rows.items()
        if name in ("identity", "shipped", "shipped-refine") or name.startswith("ants")
    }
    for shipped in ("shipped", "shipped-refine"):
        if shipped in rows:
            entries[f"dev-test seconds per pair, {rows[shipped]['label']}"] = (
                f"{rows[shipped]['seconds_per_pair']:.2f} ({result['threads']} threads)"
            )
    for item in result["comparisons"]:
        if item["a"].startswith("shipped"):
            entries[f"dev-test {rows[item['a']]['label']} minus {rows[item['b']]['label']}"] = (
                f"{item['mean']:+.4f} [{item['low']:+.4f}, {item['high']:+.4f}] ({item['verdict']})"
            )
    entries["dev-test set"] = (
        f"{len(next(iter(rows.values()))['per_pair'])} pairs of MNI152 under deformations no training or validation used "
        f"(2 mm, 100 parcels); see {report}"
    )
    return entries


def write_results(out: Path, stem: str, result: dict, records: dict[str, list[dict]], report: str) -> None:
    """``<stem>.json`` (the result), ``<stem>_pairs.csv`` (per-pair Dice of every row) and ``<stem>.md``
    (the report, also printed) in ``out``."""
    write_json(out / f"{stem}.json", result)
    count = len(next(iter(records.values())))
    with open(out / f"{stem}_pairs.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["pair", *records])
        for index in range(count):
            writer.writerow([index, *(f"{records[name][index]['dice']:.5f}" for name in records)])
    write_text(out / f"{stem}.md", report)
    print(report)


def run_context(argv: Sequence[str] | None) -> dict[str, object]:
    """What every results file says about its run: the command, machine, torch, threads and time."""
    return {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_rows(jobs: dict[str, tuple[str, Callable[[], list[dict]]]]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    rows, records = {}, {}
    for name, (label, job) in jobs.items():
        started = time.perf_counter()
        records[name] = job()
        rows[name] = summarise_row(name, label, records[name])
        print(
            f"{label}: Dice {rows[name]['dice_mean']:.4f}, {rows[name]['seconds_per_pair']:.2f} s per pair "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return rows, records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", default="benchmarks/results", help="results folder (generalization.md, .json, _pairs.csv; default benchmarks/results)"
    )
    parser.add_argument("--demo", help="checkpoint of the `make demo` model (runs/cpu-default/checkpoints/best.pt)")
    parser.add_argument("--cascade", help="training folder of a step-by-step cascade (runs/cpu-cascade): its step 1 and last step are rows")
    parser.add_argument("--pairs", type=int, default=16, help="dev-test pairs (default 16)")
    parser.add_argument("--refine", type=int, default=100, help="instance optimisation steps for the shipped model's refined row")
    parser.add_argument("--no-ants", action="store_true", help="leave out the ANTs rows (antspyx not installed)")
    parser.add_argument(
        "--card-extra",
        help="also write the shipped model's dev-test figures as a JSON object for "
        "`llamareg export-pretrained --card-extra` (its model card)",
    )
    parser.add_argument("--no-shipped", action="store_true", help="leave out the shipped model's rows")
    args = parser.parse_args(argv)
    if args.pairs < 2:
        raise SystemExit("--pairs must be >= 2")
    if args.demo and not Path(args.demo).is_file():
        raise SystemExit(f"--demo {args.demo}: no such checkpoint")
    cascade_steps = cascade_checkpoints(Path(args.cascade)) if args.cascade else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="llamareg-devtest-") as scratch:
        scratch = Path(scratch)
        pairs = load_pairs(write_devtest(scratch / "devtest", args.pairs))
        jobs: dict[str, tuple[str, Callable[[], list[dict]]]] = {"identity": ("identity (no registration)", lambda: score_identity(pairs))}
        if not args.no_ants:
            for name, (label, iterations) in ANTS_ROWS.items():
                jobs[name] = (label, lambda iterations=iterations: score_ants(pairs, iterations))
        models: dict[str, TrainedModel] = {}
        if args.demo:
            models["demo"] = load_trained_model(args.demo, device="cpu")
            jobs["demo"] = ("`make demo` model (cpu-default, network only)", lambda: score_model(models["demo"], pairs))
        for step, checkpoint in cascade_steps.items():
            name = f"cascade-step{step}"
            models[name] = load_trained_model(checkpoint, device="cpu")
            jobs[name] = (f"cpu-cascade step {step} (network only)", lambda name=name: score_model(models[name], pairs))
        if not args.no_shipped:
            try:
                models["shipped"] = load_trained_model(None, device="cpu")
            except FileNotFoundError as error:
                print(f"no shipped model: {error}", file=sys.stderr)
        if "shipped" in models:
            jobs["shipped"] = ("shipped model (network only)", lambda: score_model(models["shipped"], pairs))
            jobs["shipped-refine"] = (
                f"shipped model + --refine {args.refine}",
                lambda: score_model(models["shipped"], pairs, refine=args.refine),
            )
        rows, records = run_rows(jobs)
        self_model = "shipped" if "shipped" in models else "demo" if "demo" in models else None
        self_records = score_self_registration(models[self_model], self_registration_copies(scratch)) if self_model else []

    comparisons = []
    for name in ("demo", "shipped", "shipped-refine"):
        if name in rows:
            comparisons.append(comparison(rows, name, "identity", "beats identity"))
    if "shipped" in rows and "ants-default" in rows:
        comparisons.append(comparison(rows, "shipped", "ants-default", "not below ANTs SyN default (upper bound >= 0)"))
    if "shipped-refine" in rows and "ants-100-70-50" in rows:
        comparisons.append(comparison(rows, "shipped-refine", "ants-100-70-50", "beats ANTs SyN 100/70/50"))
    if len(cascade_steps) == 2:
        first, last = (f"cascade-step{step}" for step in cascade_steps)
        comparisons.append(comparison(rows, last, first, "later steps do not lower Dice (upper bound >= 0)"))
    time_ratios = {}
    if "shipped-refine" in rows and "ants-100-70-50" in rows:
        time_ratios["shipped + refine / ANTs 100/70/50"] = (
            rows["shipped-refine"]["seconds_per_pair"] / rows["ants-100-70-50"]["seconds_per_pair"]
        )
    result = {
        "what": (
            f"{args.pairs} dev-test pairs: the MNI152 template under random smooth deformations (12 mm at most, control points "
            "every 32 mm) and intensity changes from the seed stream 'devtest', 2 mm, 80x96x80, scored on 100 grey/white-matter "
            "parcels. Synthetic deformations of a template that no model here trained or validated on; not inter-subject "
            "registration. No checkpoint was chosen on these pairs."
        ),
        **run_context(argv),
        "ants_threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "ITK default (all cores)"),
        "checkpoints": {name: str(model.reference if hasattr(model, "reference") else model.path) for name, model in models.items()},
        "rows": rows,
        "comparisons": comparisons,
        "time_ratios": time_ratios,
        "self_model": self_model,
        "self_registration": self_records,
    }
    write_results(out, "generalization", result, records, render(result))
    if args.card_extra:
        write_json(Path(args.card_extra), card_entries(result, out / "generalization.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
