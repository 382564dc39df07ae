#!/usr/bin/env python
"""Preprocess a NIfTI dataset into webdataset shards for ``python launch/train.py --data SHARD_DIR``.

Subjects are split into train, val (set aside from training; training validates on ``val_pairs.json``)
and test (held out; ``test_pairs.json`` is the pair list for ``llamareg evaluate --pairs``).

    python data_tools/build_shards.py --layout {learn2reg,oasis,oai,folder} --input PATH --out SHARD_DIR [options]
    python data_tools/build_shards.py --layout embedded --out SHARD_DIR [--config PRESET] [data.key=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

# Run from a source checkout without installing: the repository root holds the llamareg package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llamareg.data.layouts import LAYOUTS, OAI_LABELS, discover  # noqa: E402
from llamareg.data.preprocess import Preprocessing, read_label_table  # noqa: E402
from llamareg.data.shards.build import DEFAULT_VAL_FRACTION, apply_pair_list, build_shards  # noqa: E402
from llamareg.data.shards.writer import DEFAULT_SHARD_MB  # noqa: E402

EPILOG = f"""
layouts:
  learn2reg  --input the dataset JSON (e.g. OASIS_dataset.json): 'training' subjects; 'registration_val'
             gives the test subjects and test pairs (papers report Learn2Reg's validation pairs as their test set)
  oasis      --input a folder of per-subject folders with aligned_norm.nii.gz and aligned_seg35.nii.gz
  oai        --input a folder of per-knee folders with image.nii.gz and binary masks femur, tibia,
             femoral_cartilage, tibial_cartilage (+ optional patella) .nii.gz, merged into one label map:
             {", ".join(f"{label} {name}" for label, name in OAI_LABELS.items())} (cartilage over bone)
  folder     --input a folder with images/ and labels/ (same file names), or a CSV with columns
             image[,label,key,split] (split: train, val or test)
  embedded   the synthetic MNI152 default of --config (default cpu-default) with data.key=value overrides:
             train and val only (data.num_val_subjects, data.num_val_pairs); its test set is the MNI152 dev-test

Three roles:
  test   the dataset's own pairs (learn2reg registration_val, --test-pairs FILE) or the subjects a CSV
         split column marks test; otherwise the last --test-subjects keys in sorted order (default
         {DEFAULT_VAL_FRACTION:.0%}, at least 2) with --num-test-pairs consecutive pairs (default one per subject).
         Written to SHARD_DIR/test_pairs.json, the file to give `llamareg evaluate --pairs`; training never reads them.
  val    set aside from the training subjects: the subjects a CSV split column marks val, otherwise the
         last --val-subjects labelled training keys (default {DEFAULT_VAL_FRACTION:.0%} of them, at least 2) with
         --num-val-pairs consecutive pairs (default one per subject). Written to SHARD_DIR/val_pairs.json;
         training validates on them (best checkpoint, cascade steps).
  train  the rest. Training pairs are never stored: each volume is stored once, pairs form while reading.
"""

SPLIT_OPTIONS = ("--test-pairs", "--test-subjects", "--num-test-pairs", "--val-subjects", "--num-val-pairs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data_tools/build_shards.py",
        description="Preprocess a NIfTI dataset into webdataset shards (one sample per volume) with a manifest, "
        "validation pairs and test pairs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--layout", required=True, choices=[*LAYOUTS, "embedded"], help="how the input dataset is organised")
    parser.add_argument("--input", help="dataset JSON, folder or CSV (all layouts but embedded)")
    parser.add_argument("--out", required=True, help="shard folder to write (SHARD_DIR)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="crop or pad to this shape, each divisible by 16 (default: smallest holding every subject)",
    )
    parser.add_argument(
        "--spacing", type=float, nargs="+", metavar="MM", help="resample to this voxel size, one or three values (default: keep)"
    )
    parser.add_argument(
        "--orientation", default="RAS", help="reorient to these axis codes, or 'none' to keep the voxel order (default RAS)"
    )
    parser.add_argument(
        "--clip-percentiles",
        type=float,
        nargs=2,
        default=(0.5, 99.5),
        metavar=("LOW", "HIGH"),
        help="intensity percentiles mapped to 0 and 1 (default 0.5 99.5; 0 100 = min-max)",
    )
    parser.add_argument("--label-map", help='JSON {"source id": stored id}; ids it does not list become 0 (default: keep ids)')
    parser.add_argument(
        "--test-pairs",
        metavar="FILE",
        help="pair-list JSON (fixed, moving, fixed_labels, moving_labels) of test pairs replacing the dataset's own",
    )
    parser.add_argument(
        "--test-subjects", type=int, metavar="N", help="subjects to hold out for testing when the dataset names none (default 10%%, >= 2)"
    )
    parser.add_argument("--num-test-pairs", type=int, metavar="N", help="test pairs among them (default: one per test subject)")
    parser.add_argument(
        "--val-subjects",
        type=int,
        metavar="N",
        help="labelled training subjects to set aside for validation when the dataset names none (default 10%% of them, >= 2)",
    )
    parser.add_argument("--num-val-pairs", type=int, metavar="N", help="validation pairs among them (default: one per validation subject)")
    parser.add_argument(
        "--align-to",
        metavar="REFERENCE",
        help="pre-align every subject to this NIfTI image with an affine "
        "registration (local NCC) and resample it onto REFERENCE's grid before the other steps",
    )
    parser.add_argument("--rigid", action="store_true", help="with --align-to: a rigid alignment (rotation and translation) instead")
    parser.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_MB, help=f"target shard size in MB (default {DEFAULT_SHARD_MB:g})")
    parser.add_argument("--skip-bad", action="store_true", help="log and skip unreadable or invalid inputs instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    parser.add_argument("--config", default="cpu-default", help="embedded layout: preset or YAML whose data section to export")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="embedded layout: config overrides")
    return parser


def _aligner(reference: str | None, rigid: bool):
    """The ``--align-to`` pre-alignment, or None; the reference image is checked before anything is built."""
    if reference is None:
        if rigid:
            raise ValueError("--rigid applies only with --align-to REFERENCE")
        return None
    from llamareg.inference.affine import SubjectAligner
    from llamareg.inference.images import open_volume, read_intensities

    return SubjectAligner(read_intensities(open_volume(reference, "--align-to image"), reference, "--align-to image"), rigid=rigid)


def run(args: argparse.Namespace) -> dict:
    """Build the shards ``args`` describe; returns the manifest."""
    if args.layout == "embedded":
        from llamareg.config import load_config
        from llamareg.data.shards.template_export import export_embedded

        given = [option for option in (*SPLIT_OPTIONS, "--align-to") if getattr(args, option.lstrip("-").replace("-", "_")) is not None]
        if given:
            raise ValueError(
                f"{given[0]} applies to dataset layouts; --layout embedded takes its split from data.num_val_subjects "
                "and data.num_val_pairs (and has no test split)"
            )
        return export_embedded(load_config(args.config, args.overrides), args.out, shard_mb=args.shard_mb, overwrite=args.overwrite)
    if args.overrides:
        raise ValueError(f"config overrides ({args.overrides[0]}) apply only to --layout embedded")
    if not args.input:
        raise ValueError(f"--layout {args.layout} needs --input")
    if args.spacing is not None and len(args.spacing) not in (1, 3):
        raise ValueError(f"--spacing takes one or three values, got {len(args.spacing)}")
    options = Preprocessing(
        orientation=None if args.orientation.lower() == "none" else args.orientation,
        spacing_mm=tuple(args.spacing * 3 if len(args.spacing) == 1 else args.spacing) if args.spacing else None,
        shape=tuple(args.shape) if args.shape else None,
        clip_percentiles=tuple(args.clip_percentiles),
        label_map=read_label_table(args.label_map) if args.label_map else None,
    )
    align = _aligner(args.align_to, args.rigid)
    dataset = discover(args.layout, args.input)
    if args.test_pairs:
        dataset = apply_pair_list(dataset, args.test_pairs)
    return build_shards(
        dataset,
        args.out,
        options,
        test_subjects=args.test_subjects,
        num_test_pairs=args.num_test_pairs,
        val_subjects=args.val_subjects,
        num_val_pairs=args.num_val_pairs,
        shard_mb=args.shard_mb,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        align=align,
        details={
            "layout": args.layout,
            "input": str(Path(args.input).resolve()),
            "align_to": None if align is None else {"reference": str(Path(args.align_to).resolve()), "rigid": args.rigid},
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        manifest = run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts, lists = manifest["counts"], manifest["pairs"]
    out = Path(args.out)
    test = (
        f"{counts['test_pairs']} pairs in {out / lists['test']} (report them: llamareg evaluate --checkpoint CKPT "
        f"--pairs {out / lists['test']} --out EVAL_DIR)"
        if "test" in lists
        else "none (this set has no test split)"
    )
    print(
        f"{args.out}: {counts['train']} training, {counts['val']} validation and {counts['test']} test volumes of shape "
        f"{'x'.join(map(str, manifest['shape']))} in {counts['shards']} shards, {counts['skipped']} skipped\n"
        f"  validation: {counts['val_pairs']} pairs in {out / lists['val']} (training validates on them)\n"
        f"  test: {test}\n"
        f"train with\n  python launch/train.py --data {args.out} data.shape={json.dumps(manifest['shape']).replace(' ', '')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
