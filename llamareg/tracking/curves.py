"""The training-curve figure logged with every run: loss terms and validation Dice over iterations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from llamareg.atomic import atomic_output


def plot_training_curves(metrics: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Plot ``metrics["losses"]`` (loss, similarity and diffusion at full resolution) and
    ``metrics["history"]`` (validation Dice, identity Dice dashed) side by side, as a PNG.

    Args:
        metrics: A trainer's metrics (the content of ``metrics.json``).
        path: The PNG to write (atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    losses = metrics.get("losses") or []
    for key in ("loss", "similarity_full", "diffusion_full"):
        points = [(entry["iteration"], entry[key]) for entry in losses if key in entry]
        if points:
            left.plot(*zip(*points), label=key)
    left.set(xlabel="iteration", ylabel="training loss", yscale="log", title=metrics.get("name", ""))
    left.legend(fontsize=8)
    history = metrics.get("history") or []
    if history:
        right.plot([h["iteration"] for h in history], [h["dice"] for h in history], marker="o", label="registered")
        right.axhline(history[0]["dice_identity"], linestyle="--", color="grey", label="identity")
    right.set(xlabel="iteration", ylabel="validation Dice", title="validation")
    right.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    return Path(path)
