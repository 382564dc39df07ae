"""``llamareg evaluate``: the paper's metrics, tables and figures for a trained checkpoint on a pair list."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llamareg.atomic import check_out_folder, write_json
from llamareg.config import Config
from llamareg.data.pair_list import PAIR_KEYS, PairPaths, read_pair_list
from llamareg.data.shards.reader import ShardSet
from llamareg.evaluation.figures import dice_boxplot, pair_figure
from llamareg.evaluation.pair_metrics import pair_metrics
from llamareg.evaluation.report import PairRecord, markdown_summary, per_label_csv, per_pair_csv, summarise, write_text
from llamareg.export.challenge import FORMATS, export_name, voxel_map, write_displacement
from llamareg.inference.fields import jacobian_determinant_map
from llamareg.inference.grid import grid_options
from llamareg.inference.model_io import load_trained_model
from llamareg.inference.outputs import nifti_like, save_nifti
from llamareg.inference.pair_files import check_pair, load_pair, pair_names
from llamareg.inference.refine import DEFAULT_LR, check_options
from llamareg.inference.registration import grid_of, register_pair, warp_to_fixed

# What an earlier `evaluate` into the same folder left: replacing it takes --overwrite.
EVALUATE_OUTPUTS = ("summary.json", "summary.md", "metrics_per_pair.csv", "metrics_per_label.csv", "jacobian")
DESCRIPTION = "Evaluate a trained LLaMA-Reg checkpoint on a list of labelled pairs (paper metrics, tables, figures)."
EPILOG = """\
PAIRS.json is a JSON list of objects with the keys fixed, moving, fixed_labels and moving_labels
(NIfTI paths; relative paths are resolved against the JSON file's folder). Every pair is registered
as `llamareg register` does (the model grid: the training voxel size or --spacing, over the fixed
image's box rounded to the nearest multiples of 16 voxels or --shape; --refine: coarse to fine up to the fixed
image's own voxels) and scored on the fixed image's grid. For a model trained from a shard folder,
give its test_pairs.json: a pair using one of the run's training or validation subjects is refused.

Writes to --out: metrics_per_label.csv (a row per pair and label: Dice before/after, HD95 in mm),
metrics_per_pair.csv (mean Dice, % |J| <= 0, Learn2Reg's SDlogJ, LUMIR's NDV, mean HD95, seconds), summary.json,
summary.md (the paper's Table 1 layout), dice_boxplot.png (Dice per label, paper Figs. 5 and 7)
and pair_<i>.png for each --figure-pairs index (fixed, moving, warped, warped grid, |u|; paper Fig. 6);
with --jacobian, jacobian/<fixed>__<moving>.nii.gz per pair (det J on the fixed grid, as `register --jacobian`).
With --mlflow-run-id the summary metrics (eval_*) and these files (under evaluation/) are logged to
that existing MLflow run (tracking URI from --tracking-uri or MLFLOW_TRACKING_URI).
"""


def _indices(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated pair indices such as 0,3, got '{text}'") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"pair indices must be >= 0, got '{text}'")
    return values


def _export_target(export: list[str] | None, overwrite: bool) -> tuple[str | None, Path | None]:
    """The checked ``--export FORMAT DIR`` (a known format; a folder without earlier exports unless ``overwrite``)."""
    if not export:
        return None, None
    kind, folder = export
    if kind not in FORMATS:
        raise ValueError(f"--export must be one of {', '.join(FORMATS)}, got '{kind}'")
    return kind, check_out_folder(folder, ("disp_*",), overwrite, option="--export")


def check_held_out(pairs_file: str | os.PathLike, pairs: list[PairPaths], config: Config) -> None:
    """Refuse pairs that use a subject the checkpoint's run trained or validated on.

    Only a run trained from a shard folder that exists here can be checked: its manifest lists the
    run's training and validation subjects, whose images are compared with the pairs' moving and
    fixed images as absolute paths (symlinks not followed, as the shard reader resolves them).

    Raises:
        ValueError: naming the pair, the subject and ``data.source``, and pointing to the test pairs.
    """
    source = config.data.source
    if source in ("synth", "template") or not Path(source).is_dir():
        return
    try:
        shards = ShardSet(source)
    except (FileNotFoundError, ValueError):
        # No manifest of this format (an unfinished or older build): it lists no subjects to compare with.
        return
    used = {"training": shards.subject_images(["train"]), "validation": shards.subject_images(["val"])}
    test = shards.manifest["pairs"].get("test")
    where = Path(source) / test if test else "test_pairs.json of a shard folder built with a test split"
    for index, pair in enumerate(pairs):
        for image in (pair.moving, pair.fixed):  # absolute, as read_pair_list resolves them
            for role, images in used.items():
                if image in images:
                    raise ValueError(
                        f"--pairs {pairs_file} pair {index} uses {images[image]}, a {role} subject of the checkpoint's run "
                        f"(data.source={source}); evaluate on test pairs ({where})"
                    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        help="trained checkpoint (.pt) or exported model (.safetensors), e.g. "
        "runs/cpu-default/checkpoints/best.pt (default: the pretrained model shipped with llamareg)",
    )
    parser.add_argument("--pairs", required=True, help="JSON list of {fixed, moving, fixed_labels, moving_labels}")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already in --out (without it they are an error)")
    parser.add_argument("--figure-pairs", type=_indices, default=[0], metavar="I,J", help="pairs to draw a Fig. 6 panel of (default 0)")
    parser.add_argument("--method", default="LLaMA-Reg", help="the method's row name in summary.md (default LLaMA-Reg)")
    parser.add_argument(
        "--one-way",
        action="store_true",
        help="run the network moving-to-fixed only (default: both ways, averaged, so that an image "
        "registered to itself gets zero displacement)",
    )
    parser.add_argument("--refine", type=int, default=0, metavar="N", help="N Adam steps of instance optimisation per pair (default 0)")
    parser.add_argument(
        "--refine-lr",
        type=float,
        default=DEFAULT_LR,
        help=f"instance optimisation step size in voxels of each level (default {DEFAULT_LR})",
    )
    parser.add_argument("--spacing", metavar="MM", help="model grid voxel size in mm (default: the training spacing, data.spacing_mm)")
    parser.add_argument(
        "--shape",
        nargs="+",
        metavar="N",
        help="model grid shape, D H W or D,H,W, multiples of 16 (default: the fixed image's box, rounded to the nearest multiples of 16)",
    )
    parser.add_argument("--jacobian", action="store_true", help="write each pair's det J map to jacobian/<fixed>__<moving>.nii.gz")
    parser.add_argument("--llm", help="where the LLM weights live if not where training read them (same weights)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: CUDA when available")
    parser.add_argument("--mlflow-run-id", help="log the metrics and files to this existing MLflow run")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    parser.add_argument(
        "--export",
        nargs=2,
        metavar=("FORMAT", "DIR"),
        help="also write each pair's displacement for a challenge: l2r (disp_XXXX_YYYY.npz, float16, half "
        "resolution) or lumir (disp_FFFF_MMMM.nii.gz), in voxels for scipy's map_coordinates",
    )


def execute(args: argparse.Namespace) -> int:
    """Run ``llamareg evaluate``; inputs are checked first and the outputs written only at the end."""
    check_options(args.refine, args.refine_lr)
    spacing, shape = grid_options(args.spacing, args.shape)
    out = check_out_folder(args.out, EVALUATE_OUTPUTS, args.overwrite)
    export_kind, export_folder = _export_target(args.export, args.overwrite)
    pairs = read_pair_list(args.pairs, required=PAIR_KEYS)
    unknown = [i for i in args.figure_pairs if i >= len(pairs)]
    if unknown:
        raise ValueError(f"--figure-pairs {unknown[0]} is out of range: {args.pairs} lists pairs 0..{len(pairs) - 1}")
    opened = [check_pair(pair) for pair in pairs]
    for pair, headers in zip(pairs, opened):
        load_pair(pair, headers)  # voxel checks up front
    if args.mlflow_run_id:
        from llamareg.tracking.evaluation_run import check_run

        check_run(args.mlflow_run_id, args.tracking_uri)
    trained = load_trained_model(args.checkpoint, llm=args.llm, device=args.device)
    check_held_out(args.pairs, pairs, trained.config)
    records, panels, names = [], {}, pair_names(pairs)
    for index, (pair, headers) in enumerate(zip(pairs, opened)):
        loaded = load_pair(pair, headers)
        registration = register_pair(
            trained,
            loaded.fixed,
            loaded.moving,
            loaded.moving_labels,
            args.refine,
            args.refine_lr,
            spacing=spacing,
            shape=shape,
            symmetric=not args.one_way,
        )
        metrics = pair_metrics(registration, loaded.fixed_labels, loaded.moving_labels)
        if export_kind:
            field = voxel_map(registration.displacement, loaded.fixed.affine, loaded.moving.affine)
            write_displacement(
                export_kind, export_folder / export_name(export_kind, pair.fixed, pair.moving, index), field, loaded.fixed.affine
            )
        if args.jacobian:
            determinant = jacobian_determinant_map(registration.displacement, grid_of(loaded.fixed))
            save_nifti(nifti_like(determinant, loaded.fixed), out / "jacobian" / f"{names[index]}.nii.gz")
        records.append(PairRecord(str(pair.fixed), str(pair.moving), metrics))
        print(
            f"pair {index}: Dice {metrics.mean_dice_identity:.4f} -> {metrics.mean_dice:.4f}, "
            f"folding {metrics.folding_pct:.3f}%, {metrics.seconds:.2f} s"
        )
        if index in args.figure_pairs:
            unmoved = warp_to_fixed(loaded.moving, grid_of(loaded.fixed), None, labels=False)
            panels[index] = (loaded.fixed, unmoved, registration)
    summary = summarise(records)
    files = [
        write_text(out / "metrics_per_label.csv", per_label_csv(records)),
        write_text(out / "metrics_per_pair.csv", per_pair_csv(records)),
        write_json(out / "summary.json", {"checkpoint": trained.reference, "method": args.method, **summary}),
        write_text(out / "summary.md", markdown_summary(summary, args.method, trained.reference)),
        dice_boxplot(out / "dice_boxplot.png", [record.metrics for record in records], args.method),
    ]
    for index, (fixed, unmoved, registration) in panels.items():
        title = f"pair {index}: {pairs[index].moving.name} -> {pairs[index].fixed.name}"
        files.append(
            pair_figure(out / f"pair_{index}.png", fixed.data, unmoved, registration.warped, registration.displacement, fixed.affine, title)
        )
    if args.mlflow_run_id:
        from llamareg.tracking.evaluation_run import log_evaluation

        log_evaluation(args.mlflow_run_id, args.tracking_uri, summary, files)
    dice = summary["dice"]
    print(
        f"{len(records)} pairs: Dice {summary['dice_identity']['mean']:.4f} (initial) -> {dice['mean']:.4f} ± {dice['std']:.4f}; "
        f"wrote {out}"
    )
    return 0
