"""Issue 7 comparison: every method trained for the same budget on the same data, evaluated on the same pairs.

Rows (paper Table 1 layout): identity (no registration), ANTs SyN (antspyx) as the classical reference,
the voxelmorph PyPI package's own model, the four baselines written here (VoxelMorph, LapIRN,
TransMorph, TransMatch; presets ``cpu-<name>``), LLaMA-Reg with one step (``cpu-default``) and with
three steps trained step by step (``cpu-cascade``).

Every learned method trains through ``llamareg.commands.train.run`` (same data, MSE + diffusion loss,
Adam, loop and MLflow tracking) for ``--iters`` iterations. Multi-phase schedules split that budget:
LapIRN level by level in its release's proportions (30k : 2k : 28k : 2k : 58k), LLaMA-Reg three steps
as cpu-cascade (450 : 150 : 150, i.e. 60/20/20 %). Validation runs only at the start and end of each
phase. Each method then registers the held-out pairs (a shard folder's test pairs, else the data's
validation pairs) with its final weights, reloaded from the checkpoint into a freshly built model;
per pair: mean foreground Dice of the labels warped (nearest neighbour), % of voxels with det J <= 0,
SD of log det J (clipped), HD95 (mm) and the seconds of one registration (network forward; for ANTs
the whole ``ants.registration`` call). Each method runs in its own process, so peak resident memory
is its own.

Outputs in ``--out``: ``table.md``, ``table.csv``, ``pairs.csv`` (per pair), ``results.json``,
``dice_boxplot.png``; ``mlflow.db`` and ``mlartifacts/`` (experiment ``compare``: one run per method,
with child runs for the phases); ``runs/<method>/`` (checkpoints, logs; not for git). A method whose
``runs/<method>/result.json`` matches the settings is reused (delete it to rerun).

Usage:
    python benchmarks/compare.py --out DIR [--iters N] [--data SHARD_DIR] [--methods identity lapirn ...] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ITERS = 150
EXPERIMENT = "compare"
# method -> (table label, kind, preset)
METHODS: dict[str, tuple[str, str, str | None]] = {
    "identity": ("Identity (no registration)", "identity", None),
    "ants-syn": ("ANTs SyN (antspyx)", "ants", None),
    "voxelmorph-package": ("VoxelMorph (voxelmorph package)", "train", "cpu-voxelmorph-package"),
    "voxelmorph": ("VoxelMorph", "train", "cpu-voxelmorph"),
    "lapirn": ("LapIRN", "train", "cpu-lapirn"),
    "transmorph": ("TransMorph", "train", "cpu-transmorph"),
    "transmatch": ("TransMatch", "train", "cpu-transmatch"),
    "llamareg": ("LLaMA-Reg, 1 step", "train", "cpu-default"),
    "llamareg-3steps": ("LLaMA-Reg, 3 steps (step by step)", "train", "cpu-cascade"),
}
# How a multi-phase schedule splits the budget (relative phase lengths).
PHASE_SHARES = {
    "lapirn": (30000, 2000, 28000, 2000, 58000),  # LapIRN's release: level 1; level 2 warm-up, joint; level 3 likewise
    "llamareg-3steps": (450, 150, 150),  # cpu-cascade's step_iters
}
# ANTs SyN: deformable only (the pairs share the template's space, and every network here is deformable
# only), mean squares (the networks' MSE), and iterations at every level of the 4x/2x/1x pyramid
# (ANTsPy's default (40, 20, 0) leaves the full resolution unoptimised).
ANTS_SETTINGS = {"type_of_transform": "SyNOnly", "syn_metric": "meansquares", "reg_iterations": (160, 80, 40)}
COLUMNS = ["method", "status", "dice_mean", "dice_std", "folding_pct", "sdlogj_l2r", "hd95_mm", "inference_seconds_per_pair",
           "train_seconds_per_iteration", "peak_memory_mb", "trainable_parameters", "frozen_parameters", "iterations"]


# ----------------------------------------------------------------------------- budget
def split_budget(total: int, shares: Sequence[float]) -> list[int]:
    """``total`` iterations split in proportion to ``shares`` (largest remainders), each phase at least 1.

    Example:
        >>> split_budget(150, (450, 150, 150))
        [90, 30, 30]
        >>> split_budget(120, (30000, 2000, 28000, 2000, 58000))
        [30, 2, 28, 2, 58]
    """
    if total < len(shares):
        raise ValueError(f"--iters {total} is fewer than the schedule's {len(shares)} phases")
    exact = [total * s / sum(shares) for s in shares]
    counts = [max(1, math.floor(x)) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True)
    index = 0
    while sum(counts) < total:
        counts[order[index % len(order)]] += 1
        index += 1
    while sum(counts) > total:
        largest = max(range(len(counts)), key=lambda i: counts[i])
        counts[largest] -= 1
    return counts


def method_overrides(method: str, iters: int, out: Path, data: str | None, extra: Sequence[str] = ()) -> list[str]:
    """Config overrides of one learned method: output, budget, tracking store, data."""
    overrides = [f"train.out={json.dumps(str(out / 'runs' / method))}", "tracking.enabled=true",
                 f"tracking.uri={json.dumps('sqlite:///' + str((out / 'mlflow.db').resolve()))}",
                 f"tracking.experiment={EXPERIMENT}"]
    if method in PHASE_SHARES:
        phases = split_budget(iters, PHASE_SHARES[method])
        overrides += [f"train.step_iters={phases}", f"train.val_every={max(phases)}", f"train.max_iters={max(phases)}"]
    else:
        overrides += [f"train.max_iters={iters}", f"train.val_every={iters}"]
    return overrides + data_overrides(data) + list(extra)


def data_overrides(data: str | None) -> list[str]:
    if data is None:
        return []
    from llamareg.data.shards.reader import ShardSet

    shape = list(ShardSet(data).shape)
    return [f"data.source={json.dumps(str(Path(data).resolve()))}", f"data.shape={shape}"]


# ----------------------------------------------------------------------------- evaluation
def spacing_of(config) -> tuple[tuple[float, float, float], str]:
    """Voxel spacing for HD95 and its unit: the embedded data's, a shard folder's manifest, else voxels."""
    if config.data.source == "template":
        return (config.data.spacing_mm,) * 3, "mm"
    from llamareg.data.shards.reader import ShardSet

    spacing = ShardSet(config.data.source).manifest.get("spacing_mm")
    return (tuple(float(s) for s in spacing), "mm") if spacing else ((1.0, 1.0, 1.0), "voxels")


def evaluation_pairs(config):
    """The pairs every method is scored on: a shard folder's test pairs, which no checkpoint was chosen on;
    otherwise the held-out validation pairs of ``config``'s data (template: only the validation subjects
    are made; they do not depend on the training subjects)."""
    import dataclasses

    from llamareg.data.factory import build_pair_datasets, shard_pairs
    from llamareg.data.shards.reader import ShardSet

    if config.data.source not in ("synth", "template"):
        shards = ShardSet(config.data.source)
        if "test" in shards.manifest["pairs"]:
            return shard_pairs(shards, "test")
    if config.data.source == "template":
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, num_train_subjects=2),
                                     train=dataclasses.replace(config.train, max_iters=1))
    return build_pair_datasets(config)[1]


def score_pair(batch: dict, flow, spacing: Sequence[float], seconds: float) -> dict[str, Any]:
    """One pair's metrics for a full-resolution voxel displacement ``flow`` (1, 3, D, H, W)."""
    import torch

    from llamareg.metrics import dice_per_label, folding_percentage, hausdorff95, sdlogj_l2r
    from llamareg.spatial.functional import warp
    from llamareg.training.validation import foreground_labels

    moving_labels, fixed_labels = batch["moving_labels"][None], batch["fixed_labels"][None]
    labels = foreground_labels(moving_labels, fixed_labels)
    warped = warp(moving_labels, flow.float(), mode="nearest")
    dice = dice_per_label(warped, fixed_labels, labels)[0]
    before = dice_per_label(moving_labels, fixed_labels, labels)[0]
    hd95 = hausdorff95(warped, fixed_labels, labels, spacing)[0]
    return {
        "pair": f"{batch['moving_name']}->{batch['fixed_name']}",
        "dice": float(torch.nanmean(dice)),
        "dice_identity": float(torch.nanmean(before)),
        "folding_pct": float(folding_percentage(flow.float())[0]),
        "sdlogj_l2r": float(sdlogj_l2r(flow.float())[0]),
        "hd95": float(torch.nanmean(hd95)),
        "seconds": seconds,
    }


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over pairs (Dice also its standard deviation over pairs)."""
    import statistics

    dice = [r["dice"] for r in records]
    return {
        "dice_mean": statistics.fmean(dice),
        "dice_std": statistics.pstdev(dice),
        "folding_pct": statistics.fmean(r["folding_pct"] for r in records),
        "sdlogj_l2r": statistics.fmean(r["sdlogj_l2r"] for r in records),
        "hd95_mm": statistics.fmean(r["hd95"] for r in records),
        "inference_seconds_per_pair": statistics.fmean(r["seconds"] for r in records),
    }


# ----------------------------------------------------------------------------- one method (child process)
def run_identity(base, out: Path) -> dict[str, Any]:
    import torch

    pairs = evaluation_pairs(base)
    spacing, _ = spacing_of(base)
    records = [score_pair(b, torch.zeros(1, 3, *b["moving"].shape[1:]), spacing, 0.0) for b in pairs]
    return {"records": records, "trainable_parameters": 0, "frozen_parameters": 0, "peak_memory_mb": None,
            "train_seconds_per_iteration": None, "iterations": 0}


def ants_field(result: dict, fixed_image, moving_image, spacing: Sequence[float]):
    """ANTs' forward transforms composed into one field, as llamareg's voxel displacement (1, 3, D, H, W).

    ``ants.from_numpy`` images have origin 0 and identity direction, so physical axis k is array axis k
    and the composed field's vectors (mm) divided by the spacing are voxel displacements; ANTs' forward
    transform maps fixed points to moving points, i.e. ``warped(x) = moving(x + u(x))`` as here.
    """
    import ants
    import numpy as np
    import torch

    with tempfile.TemporaryDirectory() as folder:
        path = ants.apply_transforms(fixed_image, moving_image, result["fwdtransforms"], compose=os.path.join(folder, "composed"))
        field = ants.image_read(path).numpy()
    return torch.from_numpy(field / np.asarray(spacing)).permute(3, 0, 1, 2)[None].float()


def run_ants(base, out: Path) -> dict[str, Any]:
    # ITK threads as many as torch's (OMP_NUM_THREADS), for a like-for-like time per pair.
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())))
    try:
        import ants
    except ImportError as error:
        return {"status": f"not installed ({type(error).__name__}: {error}); pip install -e .[compare]"}
    import numpy as np
    import torch

    from llamareg.training.memory import peak_memory_mb

    pairs = evaluation_pairs(base)
    spacing, _ = spacing_of(base)
    records = []
    for b in pairs:
        fixed = ants.from_numpy(b["fixed"][0].numpy().astype(np.float32), spacing=tuple(spacing))
        moving = ants.from_numpy(b["moving"][0].numpy().astype(np.float32), spacing=tuple(spacing))
        tick = time.perf_counter()
        result = ants.registration(fixed, moving, **ANTS_SETTINGS)
        seconds = time.perf_counter() - tick
        records.append(score_pair(b, ants_field(result, fixed, moving, spacing), spacing, seconds))
        for path in result["fwdtransforms"] + result["invtransforms"]:
            Path(path).unlink(missing_ok=True)
    return {"records": records, "trainable_parameters": 0, "frozen_parameters": 0, "peak_memory_mb": peak_memory_mb(torch.device("cpu")),
            "train_seconds_per_iteration": None, "iterations": 0, "settings": {k: list(v) if isinstance(v, tuple) else v
                                                                                  for k, v in ANTS_SETTINGS.items()}}


def final_checkpoint(config) -> Path:
    """The final weights (``last.pt`` of the last phase): every method is evaluated after exactly its budget."""
    from llamareg.training.schedule import plan_phases

    return plan_phases(config)[-1].out / "checkpoints" / "last.pt"


def load_final_model(config):
    """Build the model the final checkpoint's config describes and load its weights (the round trip
    ``llamareg register`` / ``evaluate`` take)."""
    from llamareg.config import config_from_dict
    from llamareg.networks.llamareg import build_model
    from llamareg.training.checkpoint import load_model_state, read_checkpoint

    path = final_checkpoint(config)
    payload = read_checkpoint(path)
    model = build_model(config_from_dict(payload["config"]))
    load_model_state(model, payload, str(path))
    return model.eval()


def parameter_split(model) -> tuple[int, int]:
    """(trained, frozen): frozen are the pretrained LLM weights; everything else trained in some phase."""
    from llamareg.training.checkpoint import frozen_parameter_names

    frozen_names = frozen_parameter_names(model)
    frozen = sum(p.numel() for name, p in model.named_parameters() if name in frozen_names)
    return sum(p.numel() for p in model.parameters()) - frozen, frozen


def run_training(method: str, out: Path, iters: int, data: str | None, extra: Sequence[str]) -> dict[str, Any]:
    import torch

    from llamareg.commands.train import run
    from llamareg.config import load_config

    preset = METHODS[method][2]
    try:
        config = load_config(preset, method_overrides(method, iters, out, data, extra))
        metrics = run(config, overwrite=True)  # a rerun of the comparison retrains every method into its folder
    except ValueError as error:
        if "voxelmorph package" in str(error):
            return {"status": f"not installed ({str(error)[:200]})"}
        raise
    model = load_final_model(config)
    pairs = evaluation_pairs(config)
    spacing, _ = spacing_of(config)
    records = []
    with torch.no_grad():
        first = pairs[0]
        model(first["moving"][None], first["fixed"][None])  # warm-up: allocator and first-call costs
        for b in pairs:
            moving, fixed = b["moving"][None], b["fixed"][None]
            tick = time.perf_counter()
            outputs = model(moving, fixed)
            flow = outputs.get("full_flow", outputs["flows"][-1])
            seconds = time.perf_counter() - tick
            records.append(score_pair(b, flow, spacing, seconds))
    phases = metrics.get("steps") or [metrics]
    iterations = sum(p["iterations"] for p in phases)
    seconds_per_iteration = sum(p["train_seconds_per_iteration"] * p["iterations"] for p in phases) / max(iterations, 1)
    trained, frozen = parameter_split(model)
    _log_evaluation(out, method, records, config)
    return {"records": records, "trainable_parameters": trained, "frozen_parameters": frozen,
            "peak_memory_mb": max(p["peak_memory_mb"] for p in phases), "train_seconds_per_iteration": seconds_per_iteration,
            "iterations": iterations, "phase_iterations": [p["iterations"] for p in phases],
            "wall_seconds": sum(p["wall_seconds"] for p in phases), "val_dice_identity": metrics.get("val_dice_identity")}


def _log_evaluation(out: Path, method: str, records: list[dict[str, Any]], config=None, params: dict | None = None) -> None:
    """Evaluation metrics into the method's MLflow run (its training run, or a new run for identity / ANTs)."""
    from llamareg.config import TrackingConfig
    from llamareg.tracking.mlflow_run import open_training_run

    settings = TrackingConfig(enabled=True, uri="sqlite:///" + str((out / "mlflow.db").resolve()), experiment=EXPERIMENT)
    folder = out / "runs" / method
    # A training run left its id in its folder: reopen it. Identity and ANTs get a run of their own.
    run = open_training_run(settings, folder, method, resume=True)
    if params:
        run.log_params(params)
    values = summary(records)
    run.log_metrics({f"eval_{key}": value for key, value in values.items()}, 0)
    run.set_tags({"comparison_method": method})
    pairs_file = folder / "eval_pairs.json"
    pairs_file.write_text(json.dumps(records, indent=1) + "\n")
    run.log_artifact(pairs_file)
    run.finish()


def child(method: str, out: Path, iters: int, data: str | None, extra: Sequence[str] = ()) -> dict[str, Any]:
    from llamareg.config import load_config

    base = load_config("cpu-default", data_overrides(data) + list(extra))
    kind = METHODS[method][1]
    folder = out / "runs" / method
    folder.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    if kind == "identity":
        result = run_identity(base, out)
    elif kind == "ants":
        result = run_ants(base, out)
    else:
        result = run_training(method, out, iters, data, extra)
    if "records" in result and kind != "train":
        _log_evaluation(out, method, result["records"], params={"method": method, **result.get("settings", {})})
    result.update({"method": method, "iters": iters, "data": data or "embedded", "set": list(extra), "seconds": time.perf_counter() - tick})
    result.setdefault("status", "ok")
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


# ----------------------------------------------------------------------------- table
def _format(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _count(value: Any) -> str:
    if value is None:
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return str(value)


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per method (COLUMNS), from the child results (with per-pair ``records``)."""
    rows = []
    for result in results:
        row = {key: None for key in COLUMNS}
        row.update({"method": result["method"], "status": result.get("status", "ok")})
        if result.get("records"):
            row.update(summary(result["records"]))
        for key in ("train_seconds_per_iteration", "peak_memory_mb", "trainable_parameters", "frozen_parameters", "iterations"):
            row[key] = result.get(key)
        rows.append(row)
    return rows


def write_table(results: list[dict[str, Any]], out: Path, caption: str = "") -> str:
    """``out/table.md`` (Markdown, paper Table 1 layout), ``out/table.csv`` and ``out/pairs.csv``; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    with open(out / "table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if value is None else value) for key, value in row.items()})
    with open(out / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "pair", "dice", "dice_identity", "folding_pct", "sdlogj_l2r", "hd95", "seconds"])
        for result in results:
            for record in result.get("records") or []:
                writer.writerow([result["method"], record["pair"], record["dice"], record["dice_identity"], record["folding_pct"],
                                 record["sdlogj_l2r"], record["hd95"], record["seconds"]])
    lines = [
        "| Method | Dice (%) | % \\|J\\| <= 0 | SDlogJ (L2R) | HD95 (mm) | Inference s / pair | Train s / iter | Peak memory (MB) "
        "| Trainable params | Frozen params |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        label = METHODS.get(row["method"], (row["method"],))[0]
        if row["status"] != "ok":
            lines.append(f"| {label} | {row['status']} | | | | | | | | |")
            continue
        dice = f"{100 * row['dice_mean']:.2f} ± {100 * row['dice_std']:.2f}"
        lines.append(
            f"| {label} | {dice} | {_format(row['folding_pct'], 3)} | {_format(row['sdlogj_l2r'], 3)} | {_format(row['hd95_mm'], 2)} "
            f"| {_format(row['inference_seconds_per_pair'], 3)} | {_format(row['train_seconds_per_iteration'], 2)} "
            f"| {_format(row['peak_memory_mb'], 0)} | {_count(row['trainable_parameters'])} | {_count(row['frozen_parameters'])} |"
        )
    text = (caption + "\n\n" if caption else "") + "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def dice_boxplot(results: list[dict[str, Any]], path: Path) -> Path:
    """Per-pair Dice of each evaluated method as box plots (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.get("records")]
    figure, axes = plt.subplots(figsize=(1.3 * len(shown) + 2, 4.5))
    axes.boxplot([[100 * x["dice"] for x in r["records"]] for r in shown], showmeans=True)
    axes.set_xticks(range(1, len(shown) + 1), [METHODS.get(r["method"], (r["method"],))[0].replace(" (", "\n(").replace(", ", ",\n")
                                              for r in shown], fontsize=8)
    axes.set_ylabel("Dice (%) per held-out pair")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def caption_for(results: list[dict[str, Any]], iters: int, data: str | None, command: str, extra: Sequence[str] = ()) -> str:
    pairs = max((len(r.get("records") or []) for r in results), default=0)
    splits = "".join(f" {METHODS[m][0]}: {'/'.join(map(str, split_budget(iters, shares)))} over its phases." for m, shares in PHASE_SHARES.items()
                     if any(r["method"] == m for r in results))
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    return (
        f"Measured {date.today().isoformat()} on a {os.cpu_count()}-core {platform.machine()} CPU "
        f"(OMP_NUM_THREADS={threads}) by `{command}`: {iters} training iterations per method on "
        f"{_data_description(data, extra)}, "
        f"evaluated on the same {pairs} held-out pairs with each method's final weights.{splits} ANTs SyN: "
        f"{', '.join(f'{k}={v}' for k, v in ANTS_SETTINGS.items())}, time per pair is the whole registration. Dice: mean ± std over pairs of "
        "the mean foreground-label Dice; % |J| <= 0 and SDlogJ of the full-resolution field; HD95 averaged over labels. "
        "Train s / iter: forward, loss, backward and Adam step (schedules: averaged over their phases). Peak memory: "
        "the method's process's peak resident memory (CPU). Frozen params: the pretrained LLM layers; trainable: "
        "everything trained in some phase."
    )


def _data_description(data: str | None, extra: Sequence[str]) -> str:
    from llamareg.config import load_config

    config = load_config("cpu-default", data_overrides(data) + list(extra))
    shape = "x".join(map(str, config.data.shape))
    if data is None:
        return (f"the embedded default (synthetic subjects from the MNI152 template, {shape} at {config.data.spacing_mm} mm, "
                f"{config.data.num_train_subjects} training subjects)")
    return f"the shards in {data} ({shape})"


# ----------------------------------------------------------------------------- driver
def _reusable(path: Path, iters: int, data: str | None, extra: Sequence[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    same = result.get("iters") == iters and result.get("data") == (data or "embedded") and result.get("set", []) == list(extra)
    return result if same else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS, help=f"training iterations per method (default {DEFAULT_ITERS})")
    parser.add_argument("--data", metavar="SHARD_DIR", help="shard folder (default: the embedded data)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="rows to produce (default: all)")
    parser.add_argument("--set", nargs="*", default=[], metavar="section.key=value",
                        help="config overrides for every method, for quick checks (e.g. data.shape=[32,32,32] data.num_val_pairs=2)")
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.child:
        sys.path.insert(0, str(ROOT))
        child(args.child, out, args.iters, args.data, args.set)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for method in args.methods:
        folder = out / "runs" / method
        result = _reusable(folder / "result.json", args.iters, args.data, args.set)
        if result is None:
            folder.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--out", str(out), "--iters", str(args.iters)]
            if args.data:
                command += ["--data", args.data]
            if args.set:
                command += ["--set", *args.set]
            print(f"[compare] {method}: running (log {folder / 'log.txt'})", flush=True)
            tick = time.perf_counter()
            with open(folder / "log.txt", "w") as log:
                process = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            if process.returncode:
                tail = (folder / "log.txt").read_text()[-1500:]
                print(f"[compare] {method} failed:\n{tail}", flush=True)
                result = {"method": method, "status": f"failed (exit {process.returncode}; see runs/{method}/log.txt)"}
            else:
                result = json.loads((folder / "result.json").read_text())
            print(f"[compare] {method}: {result.get('status')} in {time.perf_counter() - tick:.0f} s", flush=True)
        else:
            print(f"[compare] {method}: reusing {folder / 'result.json'}", flush=True)
        results.append(result)
    command = "python benchmarks/compare.py --out " + os.path.relpath(out, ROOT) + ("" if args.iters == DEFAULT_ITERS else f" --iters {args.iters}") + (
        f" --data {args.data}" if args.data else "") + (" --set " + " ".join(args.set) if args.set else "")
    text = write_table(results, out, caption_for(results, args.iters, args.data, command, args.set))
    dice_boxplot(results, out / "dice_boxplot.png")
    (out / "results.json").write_text(json.dumps({"date": date.today().isoformat(), "iters": args.iters, "data": args.data or "embedded",
                                                  "machine": platform.machine(), "rows": table_rows(results),
                                                  "phase_iterations": {r["method"]: r.get("phase_iterations") for r in results}},
                                                 indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
