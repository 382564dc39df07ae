"""``python launch/train.py``: train LLaMA-Reg from a preset or YAML config with overrides."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from llamareg.config import Config, load_config, preset_names

DEFAULT_PRESET = "cpu-default"


def build_parser(prog: str = "launch/train.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train LLaMA-Reg (unsupervised deformable registration with frozen LLaMA layers).",
        epilog="Overrides are section.key=value, e.g. train.lr=1e-4 model.base_channels=16. Presets: " + ", ".join(preset_names()),
    )
    parser.add_argument("--config", default=DEFAULT_PRESET, help=f"preset name or YAML file (default {DEFAULT_PRESET})")
    parser.add_argument("--out", help="output folder (train.out)")
    parser.add_argument("--max-iters", type=int, help="training iterations (train.max_iters)")
    parser.add_argument("--seed", type=int, help="seed of initialisation and pair sampling (train.seed)")
    parser.add_argument(
        "--data", metavar="SHARD_DIR", help="shard folder from data_tools/build_shards.py (data.source; default: the embedded data)"
    )
    parser.add_argument("--llm", help="LLM source (llm.source): HF folder, Meta folder, .gguf file, smollm2-135m, random:llama-2-7b")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt (cascades: keep finished steps)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (without it, an existing run is an error)"
    )
    parser.add_argument("--step", type=int, help="cascade: run (or with --resume, continue) only this phase of the schedule")
    parser.add_argument(
        "--ds",
        metavar="DS_CONFIG",
        help="train under DeepSpeed with this JSON config (ds_configs/zero2.json, ...); "
        "launch with `deepspeed launch/train.py --ds ...` for several ranks",
    )
    # The deepspeed launcher appends --local_rank=N; the rank is read from the environment instead.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    return parser


def resolve_config(args: argparse.Namespace) -> Config:
    """The preset or file, then the named flags, then the free ``key=value`` overrides."""
    flags = {
        "train.out": args.out,
        "train.max_iters": args.max_iters,
        "train.seed": args.seed,
        "llm.source": args.llm,
        "data.source": args.data,
    }
    named = [f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in flags.items() if value is not None]
    return load_config(args.config, [*named, *args.overrides])


def run(config: Config, resume: bool = False, step: int | None = None, ds: str | None = None, overwrite: bool = False) -> dict:
    """Train the schedule ``config`` describes (one phase for a one-step model); returns the metrics written.

    With ``ds`` (a DeepSpeed JSON config) this process joins the launcher's process group and trains
    with a DeepSpeed engine; the group is shut down cleanly afterwards.
    """
    from llamareg.training.schedule import run_schedule

    if ds is None:
        return run_schedule(config, resume=resume, only_phase=step, overwrite=overwrite)
    import torch

    from llamareg.distributed import init_distributed, load_deepspeed_config
    from llamareg.distributed.ds_config import read_deepspeed_json
    from llamareg.devices import resolve_device

    read_deepspeed_json(ds)  # a missing or broken file is reported before DeepSpeed and the process group start

    device_type = resolve_device(config.train.device, "train.device").type
    context = init_distributed(device_type)
    try:
        ds_config, config = load_deepspeed_config(ds, config, context.world_size, device_type)
        return run_schedule(config, resume=resume, only_phase=step, ds_config=ds_config, context=context, overwrite=overwrite)
    finally:
        torch.distributed.destroy_process_group()


def main(argv: Sequence[str] | None = None, prog: str = "launch/train.py") -> int:
    """Run the training command line ``argv`` (default ``sys.argv[1:]``); ``prog`` names it in usage and help."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args)
        if args.print_config:
            print(config.to_yaml(), end="")
            return 0
        if args.resume and args.overwrite:
            raise ValueError("--resume and --overwrite contradict each other: give one")
        metrics = run(config, resume=args.resume, step=args.step, ds=args.ds, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 reports
    print(
        f"{config.name}: validation Dice {metrics['val_dice_identity']:.4f} (identity) -> {metrics['val_dice']:.4f} "
        f"after {metrics['iterations']} iterations (best {metrics['val_dice_best']:.4f} at {metrics['best_iteration']}), "
        f"folding {metrics['val_folding_pct']:.3f}%, {metrics['wall_seconds']:.0f} s; wrote {config.train.out}/metrics.json"
    )
    if len(metrics["steps"]) > 1:
        for entry in metrics["steps"]:
            print(f"  step {entry['step']}: best validation Dice {entry['val_dice_best']:.4f}, {entry['iterations']} iterations")
    return 0
