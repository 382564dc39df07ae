#!/usr/bin/env python
"""Preprocess a NIfTI dataset into webdataset shards for ``python launch/train.py --data SHARD_DIR``.

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
             gives the validation subjects and evaluation pairs
  oasis      --input a folder of per-subject folders with aligned_norm.nii.gz and aligned_seg35.nii.gz
  oai        --input a folder of per-knee folders with image.nii.gz and binary masks femur, tibia,
             femoral_cartilage, tibial_cartilage (+ optional patella) .nii.gz, merged into one label map:
             {", ".join(f"{label} {name}" for label, name in OAI_LABELS.items())} (cartilage over bone)
  folder     --input a folder with images/ and labels/ (same file names), or a CSV with columns
             image[,label,key,split]
  embedded   the synthetic MNI152 default of --config (default cpu-default) with data.key=value overrides

Evaluation pairs: the dataset's own (learn2reg registration_val, a CSV split column) or --eval-pairs;
a dataset without them holds out --val-subjects (default {DEFAULT_VAL_FRACTION:.0%}, at least 2: the last keys in
sorted order) and pairs them consecutively. They are written to SHARD_DIR/eval_pairs.json; training
validates on them. Training pairs are never stored: each volume is stored once, pairs form while reading.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data_tools/build_shards.py",
        description="Preprocess a NIfTI dataset into webdataset shards (one sample per volume) with a manifest and evaluation pairs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--layout", required=True, choices=[*LAYOUTS, "embedded"], help="how the input dataset is organised")
    parser.add_argument("--input", help="dataset JSON, folder or CSV (all layouts but embedded)")
    parser.add_argument("--out", required=True, help="shard folder to write (SHARD_DIR)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                        help="crop or pad to this shape, each divisible by 16 (default: smallest holding every subject)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM", help="resample to this voxel size, one or three values (default: keep)")
    parser.add_argument("--orientation", default="RAS", help="reorient to these axis codes, or 'none' to keep the voxel order (default RAS)")
    parser.add_argument("--clip-percentiles", type=float, nargs=2, default=(0.5, 99.5), metavar=("LOW", "HIGH"),
                        help="intensity percentiles mapped to 0 and 1 (default 0.5 99.5; 0 100 = min-max)")
    parser.add_argument("--label-map", help='JSON {"source id": stored id}; ids it does not list become 0 (default: keep ids)')
    parser.add_argument("--eval-pairs", help="pair-list JSON (fixed, moving, fixed_labels, moving_labels) replacing the dataset's pairs")
    parser.add_argument("--val-subjects", type=int, help="subjects to hold out when the dataset names none (default 10%%, >= 2)")
    parser.add_argument("--val-pairs", type=int, help="evaluation pairs among held-out subjects (default: one per subject)")
    parser.add_argument("--shard-mb", type=float, default=DEFAULT_SHARD_MB, help=f"target shard size in MB (default {DEFAULT_SHARD_MB:g})")
    parser.add_argument("--skip-bad", action="store_true", help="log and skip unreadable or invalid inputs instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    parser.add_argument("--config", default="cpu-default", help="embedded layout: preset or YAML whose data section to export")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="embedded layout: config overrides")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Build the shards ``args`` describe; returns the manifest."""
    if args.layout == "embedded":
        from llamareg.config import load_config
        from llamareg.data.shards.embedded import export_embedded

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
    dataset = discover(args.layout, args.input)
    if args.eval_pairs:
        dataset = apply_pair_list(dataset, args.eval_pairs)
    return build_shards(
        dataset, args.out, options, val_subjects=args.val_subjects, val_pairs=args.val_pairs, shard_mb=args.shard_mb,
        skip_bad=args.skip_bad, overwrite=args.overwrite,
        details={"layout": args.layout, "input": str(Path(args.input).resolve())},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        manifest = run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    print(
        f"{args.out}: {counts['train']} training and {counts['val']} validation volumes of shape {'x'.join(map(str, manifest['shape']))} "
        f"in {counts['shards']} shards, {counts['eval_pairs']} evaluation pairs, {counts['skipped']} skipped; train with\n"
        f"  python launch/train.py --data {args.out} data.shape={json.dumps(manifest['shape']).replace(' ', '')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
