"""Export a training checkpoint as ``model.safetensors`` + ``MODEL_CARD.md`` + ``model_card.json``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from llamareg.atomic import atomic_output, write_json
from llamareg.export.card import build_card, card_markdown, read_card_extra
from llamareg.export.provenance import git_commit, training_command
from llamareg.inference.model_io import checkpoint_config
from llamareg.inference.pretrained import MODEL_FILE, pack_pretrained
from llamareg.training.checkpoint import read_checkpoint

CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
# A model shipped inside the package must stay small enough for a git repository and a wheel.
DEFAULT_MAX_MB = 25.0


@dataclass(frozen=True)
class ExportedModel:
    """The files an export wrote and the model file's identity."""

    model: Path
    card_json: Path
    card_markdown: Path
    sha256: str
    size_bytes: int
    dtype: str


def export_pretrained(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    fp16: bool = False,
    command: str | None = None,
    card_extra: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_mb: float = DEFAULT_MAX_MB,
) -> ExportedModel:
    """Write ``checkpoint``'s trainable weights, config and LLM identity as an exported model in ``out``.

    Every input is checked before anything is written; each file is written atomically.

    Args:
        checkpoint: A ``best.pt`` (or ``last.pt``) written by llamareg training.
        out: The folder to write ``model.safetensors``, ``MODEL_CARD.md`` and ``model_card.json`` to.
        fp16: Store floating tensors as float16.
        command: The command that trained the model, for the card (default: the preset and the
            overrides that reproduce the checkpoint's config).
        card_extra: A JSON object file whose entries (e.g. dev-test figures) are added to the card.
        overwrite: Replace existing files in ``out``.
        max_mb: Largest ``model.safetensors`` accepted, in MB (10^6 bytes).

    Raises:
        FileNotFoundError: the checkpoint or the ``card_extra`` file does not exist.
        ValueError: a bad input (see the messages), an output that exists without ``overwrite``,
            or a model file over ``max_mb``.
    """
    out = Path(out)
    targets = [out / MODEL_FILE, out / CARD_MARKDOWN, out / CARD_JSON]
    _check_outputs(out, targets, overwrite)
    if not max_mb > 0:
        raise ValueError(f"--max-mb must be positive, got {max_mb}")
    if command is not None and not command.strip():
        raise ValueError("--command is empty; give the command line that trained the model, or leave it out")
    extra = read_card_extra(card_extra) if card_extra is not None else {}
    payload = read_checkpoint(checkpoint)
    config = checkpoint_config(payload, str(checkpoint))
    data = pack_pretrained(payload, fp16=fp16)
    if len(data) > max_mb * 1e6:
        raise ValueError(
            f"{targets[0]} would be {len(data) / 1e6:.1f} MB, over the {max_mb:g} MB limit; "
            f"{'raise --max-mb' if fp16 else 'export with --fp16'} or train a smaller model"
        )
    file_info = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "dtype": "float16" if fp16 else "float32",
        "tensors": len(payload["model"]),
        "values": sum(tensor.numel() for tensor in payload["model"].values()),
    }
    card = build_card(config, payload, file_info, git_commit(), command or training_command(config), extra)
    write_json(targets[2], card)
    with atomic_output(targets[1]) as temporary:
        temporary.write_text(card_markdown(card))
    # The model file last: once it is there, so is its card.
    with atomic_output(targets[0]) as temporary:
        temporary.write_bytes(data)
    return ExportedModel(targets[0], targets[2], targets[1], file_info["sha256"], len(data), file_info["dtype"])


def _check_outputs(out: Path, targets: list[Path], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if not overwrite:
        for target in targets:
            if target.exists():
                raise ValueError(f"{target} exists; pass --overwrite to replace it")
