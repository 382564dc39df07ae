"""The ``llamareg`` command: ``llamareg train | register | warp | evaluate | export-pretrained ...``.

Bad input (a missing file, an image that is not 3D, labels off their image's grid, a checkpoint of
another architecture, ...) ends the command with one ``error: ...`` line on stderr and exit code 2,
before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from llamareg.commands import evaluate, export_pretrained, register, warp

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamareg", description="LLaMA-Reg: unsupervised deformable 3D registration with frozen LLaMA layers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,register,warp,evaluate,export-pretrained}")
    commands.add_parser("train", help="train a model (same options as launch/train.py; see `llamareg train --help`)", add_help=False)
    for name, module, summary in (
        ("register", register, "register NIfTI pairs with a trained checkpoint"),
        ("warp", warp, "apply a saved registration to another image or label map"),
        ("evaluate", evaluate, "metrics, tables and figures of a checkpoint on labelled pairs"),
        ("export-pretrained", export_pretrained, "export a checkpoint as model.safetensors with a model card"),
    ):
        sub = commands.add_parser(
            name, help=summary, description=module.DESCRIPTION, epilog=module.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.configure(sub)
        sub.set_defaults(execute=module.execute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from llamareg.commands.train import main as train_main

        return train_main(argv[1:], prog="llamareg train")
    args = build_parser().parse_args(argv)
    try:
        return args.execute(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
