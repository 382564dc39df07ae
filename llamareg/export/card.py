"""The model card of an exported model: its fields (``model_card.json``) and their Markdown rendering."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from llamareg.config import Config
from llamareg.export.provenance import data_description
from llamareg.inference.pretrained import MODEL_FILE

# The card's own keys; a --card-extra file may add others but not replace these.
CARD_KEYS = (
    "name",
    "file",
    "sha256",
    "size_bytes",
    "dtype",
    "tensors",
    "values",
    "architecture",
    "shape",
    "llm",
    "git_commit",
    "git_dirty",
    "training_command",
    "seed",
    "data_seed",
    "data",
    "iterations",
    "checkpoint_iteration",
    "validation",
    "config",
)


def read_card_extra(path: str | os.PathLike) -> dict[str, Any]:
    """The extra card entries of a ``--card-extra`` JSON file (an object, e.g. dev-test figures).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a JSON object, or names a key the card sets itself.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--card-extra {path} does not exist")
    try:
        extra = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--card-extra {path} is not valid JSON: {error}") from None
    if not isinstance(extra, dict):
        raise ValueError(f"--card-extra {path} must hold a JSON object of card entries, got a {type(extra).__name__}")
    clashes = sorted(set(extra) & set(CARD_KEYS))
    if clashes:
        raise ValueError(f"--card-extra {path} sets {clashes}, which the card fills itself; rename those keys")
    return extra


def build_card(
    config: Config,
    payload: dict[str, Any],
    file_info: dict[str, Any],
    commit: dict[str, Any],
    command: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The ``model_card.json`` fields.

    Args:
        config: The training config.
        payload: The checkpoint (its progress entries give the validation figures).
        file_info: ``sha256``, ``size_bytes``, ``dtype``, ``tensors`` and ``values`` of ``model.safetensors``.
        commit: ``{"commit", "dirty"}`` of the source checkout at export.
        command: The command that trained the model (None: unknown).
        extra: Entries merged in after the card's own (from ``--card-extra``).
    """
    return {
        "name": config.name,
        "file": MODEL_FILE,
        **file_info,
        "architecture": config.model.architecture,
        "shape": list(config.data.shape),
        # source: what the config names (and loading reads); resolved: the file training read it from.
        "llm": None
        if payload.get("llm_source") is None
        else {
            "source": config.llm.source,
            "resolved": payload.get("llm_source"),
            "fingerprint": payload.get("llm_fingerprint"),
            "layers": config.llm.layers,
            "calls": config.llm.calls,
        },
        "git_commit": commit["commit"],
        "git_dirty": commit["dirty"],
        "training_command": command,
        "seed": config.train.seed,
        "data_seed": config.data.seed,
        "data": {"description": data_description(config), **dataclasses.asdict(config.data)},
        "iterations": config.train.max_iters,
        "checkpoint_iteration": payload.get("iteration"),
        "validation": _validation(payload, config),
        "config": config.to_dict(),
        **extra,
    }


def _validation(payload: dict[str, Any], config: Config) -> dict[str, Any]:
    """Best validation Dice and where it was reached; these pairs also chose the checkpoint."""
    best = payload.get("best_dice")
    best = float(best) if isinstance(best, (int, float)) and math.isfinite(best) else None
    iteration = payload.get("best_iteration")
    entries = [h for h in payload.get("history") or [] if isinstance(h, dict) and h.get("iteration") == iteration]
    pairs = entries[-1].get("pairs", config.data.num_val_pairs) if entries else config.data.num_val_pairs
    initial = payload.get("initial") if isinstance(payload.get("initial"), dict) else {}
    return {
        "best_dice": best,
        "best_iteration": iteration if best is not None else None,
        "pairs": pairs,
        "dice_identity": initial.get("dice_identity"),
        "note": f"mean foreground Dice over the {pairs} validation pairs, which also selected this checkpoint (not a held-out test figure)",
    }


def card_markdown(card: dict[str, Any]) -> str:
    """``MODEL_CARD.md``: the card's fields as a document, extra entries as a table of their own."""
    llm = card["llm"]
    validation = card["validation"]
    commit = card["git_commit"] or "unknown (not exported from a git checkout)"
    if card["git_dirty"]:
        commit += " (with uncommitted changes)"
    model_rows = [
        ("file", f"`{card['file']}`"),
        ("sha256", f"`{card['sha256']}`"),
        ("size", f"{card['size_bytes'] / 1e6:.2f} MB ({card['size_bytes']} bytes)"),
        ("stored dtype", card["dtype"]),
        ("stored tensors", f"{card['tensors']} tensors, {card['values']:,} values"),
        ("architecture", card["architecture"]),
        ("model grid", "x".join(str(n) for n in card["shape"]) + " voxels"),
    ]
    if llm is not None:
        model_rows += [
            ("frozen LLM", f"`{llm['source']}`, layers {llm['layers']}, {llm['calls']} calls"),
            ("LLM fingerprint", f"`{llm['fingerprint']}`"),
        ]
    training_rows = [
        ("source commit", commit),
        ("command", f"`{card['training_command']}`" if card["training_command"] else "unknown"),
        ("seed", f"{card['seed']} (data seed {card['data_seed']})"),
        ("iterations", f"{card['iterations']} (checkpoint from iteration {card['checkpoint_iteration']})"),
        ("data", card["data"]["description"]),
    ]
    if validation["best_dice"] is None:
        selection = "No validation Dice is recorded in the checkpoint."
    else:
        selection = f"Best validation Dice {validation['best_dice']:.4f} at iteration {validation['best_iteration']}: {validation['note']}."
        if validation["dice_identity"] is not None:
            selection += f" Before registration the same pairs have a Dice of {validation['dice_identity']:.4f}."
    lines = [
        f"# LLaMA-Reg pretrained model: {card['name']}",
        "",
        "Unsupervised deformable 3D registration (LLaMA-Reg: frozen pretrained LLM layers inside a CNN), "
        "exported by `llamareg export-pretrained`.",
        "",
        "## Use",
        "",
        "```",
        "llamareg register FIXED.nii.gz MOVING.nii.gz --out OUT   # without --checkpoint: this model",
        "```",
        "",
        "or `llamareg.inference.load_trained_model()` in Python.",
    ]
    if llm is not None:
        lines += [
            "",
            "The frozen LLM layers are not in the file: they are loaded from their source and must match "
            "the fingerprint below (give `--llm` if they live elsewhere).",
        ]
    lines += ["", "## Model", "", *_table(model_rows), "", "## Training", "", *_table(training_rows), "", "## Validation", "", selection]
    extra = {key: value for key, value in card.items() if key not in CARD_KEYS}
    if extra:
        lines += ["", "## Further results", "", *_table(_flatten(extra))]
    lines += ["", "The full training config is under `config` in `model_card.json`.", ""]
    return "\n".join(lines)


def _flatten(entries: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in entries.items():
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", _cell_value(value)))
    return rows


def _cell_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_cell_value(item) for item in value)
    if value is None:
        return "-"
    return str(value)


def _table(rows: list[tuple[str, str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    return ["| | |", "|---|---|", *(f"| {cell(key)} | {cell(value)} |" for key, value in rows)]
