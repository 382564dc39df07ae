"""``llamareg export-pretrained``: a training checkpoint as a shippable model with its model card."""

from __future__ import annotations

import argparse

from llamareg.export.pretrained import CARD_JSON, CARD_MARKDOWN, DEFAULT_MAX_MB, export_pretrained
from llamareg.inference.pretrained import MODEL_FILE

DESCRIPTION = "Export a trained checkpoint as model.safetensors with a model card (e.g. into llamareg/pretrained to ship it)."
EPILOG = f"""\
Writes to --out: {MODEL_FILE} (the trainable tensors only, float16 with --fp16; the training config
and the LLM source and fingerprint as JSON in its metadata), {CARD_JSON} and {CARD_MARKDOWN}
(source commit, training command, seeds, data, iterations, best validation Dice and its iteration,
the file's sha256 and size, and the entries of --card-extra). The frozen LLM layers are not stored:
loading reads them from their source and checks their fingerprint, as for checkpoints.

A model exported to llamareg/pretrained is the one `llamareg register` and `llamareg evaluate` use
without --checkpoint; any exported model loads with --checkpoint OUT/{MODEL_FILE}.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained checkpoint, e.g. runs/cpu-pretrained/checkpoints/best.pt")
    parser.add_argument("--out", required=True, help="output folder, e.g. llamareg/pretrained")
    parser.add_argument("--fp16", action="store_true", help="store floating tensors as float16 (loading casts them back)")
    parser.add_argument(
        "--command", help="the command that trained the model, for the card (default: the preset and overrides of its config)"
    )
    parser.add_argument("--card-extra", metavar="JSON", help="JSON object file whose entries (e.g. dev-test figures) are added to the card")
    parser.add_argument(
        "--max-mb", type=float, default=DEFAULT_MAX_MB, help=f"largest {MODEL_FILE} accepted, in MB (default {DEFAULT_MAX_MB:g})"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files in --out")


def execute(args: argparse.Namespace) -> int:
    """Run ``llamareg export-pretrained``; every input is checked before anything is written."""
    exported = export_pretrained(
        args.checkpoint,
        args.out,
        fp16=args.fp16,
        command=args.command,
        card_extra=args.card_extra,
        overwrite=args.overwrite,
        max_mb=args.max_mb,
    )
    print(
        f"wrote {exported.model} ({exported.size_bytes / 1e6:.2f} MB, {exported.dtype}, sha256 {exported.sha256}), "
        f"{exported.card_markdown.name} and {exported.card_json.name}"
    )
    return 0
