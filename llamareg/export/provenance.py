"""Where an exported model came from: the source commit, the training command, the data it saw."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

import llamareg
from llamareg.config import Config, load_config, preset_names


def git_commit(folder: Path | None = None) -> dict[str, Any]:
    """The commit of the git checkout holding llamareg's sources, and whether it had uncommitted changes.

    Args:
        folder: Any folder inside the checkout (default: the one the imported package lives in).

    Returns:
        ``{"commit": sha or None, "dirty": bool or None}``; both None outside a git checkout (an
        installed wheel) or without git.
    """
    folder = folder or Path(llamareg.__file__).resolve().parent
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        dirty = bool(_git(folder, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def training_command(config: Config) -> str | None:
    """The ``llamareg train`` line that reproduces ``config``: its preset and every key that differs from it.

    Returns None when the config is not based on a shipped preset (its name is not one), since its
    YAML file is not known here; the full config is in the model card either way.
    """
    if config.name not in preset_names():
        return None
    preset = load_config(config.name).to_dict()
    overrides = []
    for section, values in config.to_dict().items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            # train.out only says where the run wrote; it does not change the model.
            if (section, key) != ("train", "out") and preset[section].get(key) != value:
                overrides.append(f"{section}.{key}={_override_value(value)}")
    return " ".join(["llamareg train --config", config.name, *(shlex.quote(item) for item in overrides)])


def _override_value(value: Any) -> str:
    """``value`` as YAML flow text, which the override parser reads back as the same value.

    JSON would not do: YAML 1.1 reads JSON's ``1e-05`` as a string.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20)
    end = "\n...\n"  # the document-end marker PyYAML puts after a bare scalar
    return text[: -len(end)] if text.endswith(end) else text.rstrip("\n")


def data_description(config: Config) -> str:
    """One sentence on the training and validation data of ``config.data``."""
    data = config.data
    shape = "x".join(str(n) for n in data.shape)
    grid = f"{shape} voxels of {data.spacing_mm:g} mm"
    if data.source == "synth":
        return (
            f"synthetic pairs of random label-map shapes in the manner of SynthMorph ({getattr(data, 'synth_labels', '?')} labels), "
            f"each image deformed by up to {data.max_displacement:g} voxels, a fresh pair every iteration, at {grid}; "
            f"validation on {data.num_val_pairs} pairs of a seed stream of their own, data seed {data.seed}"
        )
    if data.source in ("template", "embedded"):  # "embedded": the template source's name in older checkpoints
        return (
            f"synthetic subjects made from the MNI152 template (nilearn), each under its own random smooth deformation "
            f"(up to {data.max_displacement:g} voxels) and intensity change, at {grid}: {data.num_train_subjects} training "
            f"subjects and {data.num_val_subjects} disjoint validation subjects ({data.num_val_pairs} validation pairs), "
            f"data seed {data.seed}"
        )
    return (
        f"volumes of the shard folder {data.source} (data_tools/build_shards.py) at {grid}; validation on the "
        f"first {data.num_val_pairs} pairs of its val_pairs.json"
    )
