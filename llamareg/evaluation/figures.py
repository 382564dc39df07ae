"""Evaluation figures (matplotlib's object API on the Agg canvas; no pyplot state, no display needed).

* :func:`dice_boxplot`: Dice per label over pairs, before and after registration (paper Figs. 5, 7).
* :func:`pair_figure`: one pair's fixed, moving and warped slices, the warped grid and the
  displacement magnitude (paper Fig. 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from llamareg.atomic import atomic_output
from llamareg.evaluation.pair_metrics import PairMetrics

GRID_EVERY = 4  # voxels between the lines of the warped grid


def _save(figure: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(figure)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def dice_boxplot(path: str | Path, metrics: Sequence[PairMetrics], method: str) -> Path:
    """Box plot of Dice per label over pairs: "Initial" and ``method`` side by side for each label."""
    labels = sorted({label for m in metrics for label in m.labels})

    def values(label: int, after: bool) -> list[float]:
        out = []
        for m in metrics:
            if label in m.labels:
                index = m.labels.index(label)
                value = (m.dice if after else m.dice_identity)[index]
                if not np.isnan(value):
                    out.append(value)
        return out

    figure = Figure(figsize=(max(4.0, 1.2 * len(labels) + 2), 4))
    axes = figure.add_subplot()
    centres = np.arange(len(labels)) * 3.0
    for offset, after, colour, name in ((-0.5, False, "#bbbbbb", "Initial"), (0.5, True, "#4c72b0", method)):
        boxes = axes.boxplot([values(label, after) for label in labels], positions=centres + offset, widths=0.8, patch_artist=True)
        for box in boxes["boxes"]:
            box.set_facecolor(colour)
        boxes["boxes"][0].set_label(name)
    axes.set_xticks(centres, [str(label) for label in labels])
    axes.set_xlabel("label")
    axes.set_ylabel("Dice")
    axes.set_ylim(0, 1)
    axes.legend(loc="lower right")
    axes.set_title(f"Dice per label over {len(metrics)} pairs")
    return _save(figure, path)


def _slice(volume: np.ndarray, axis: int) -> np.ndarray:
    """The middle slice across ``axis``, oriented for ``imshow(origin="lower")``."""
    return np.take(volume, volume.shape[axis] // 2, axis=axis).T


def pair_figure(
    path: str | Path,
    fixed: np.ndarray,
    moving: np.ndarray,
    warped: np.ndarray,
    displacement: np.ndarray,
    affine: np.ndarray,
    title: str,
) -> Path:
    """Fixed, moving and warped slices, the warped grid and |displacement| for one pair (paper Fig. 6).

    Args:
        path: the PNG to write.
        fixed: the fixed image ``(X, Y, Z)``.
        moving: the moving image resampled unmoved onto the fixed grid.
        warped: the warped moving image on the fixed grid.
        displacement: ``(X, Y, Z, 3)`` world mm on the fixed grid.
        affine: the fixed grid's affine; the slice is taken across the array axis closest to world S.
        title: the figure's title.
    """
    axis = int(np.argmax(np.abs(affine[2, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))
    in_plane = [a for a in range(3) if a != axis]
    voxels = displacement @ np.linalg.inv(affine[:3, :3]).T  # displacement in fixed voxel units
    figure = Figure(figsize=(16, 3.6))
    panels = figure.subplots(1, 5)
    for ax, image, name in zip(panels, (fixed, moving, warped), ("fixed", "moving", "warped")):
        ax.imshow(_slice(image, axis), cmap="gray", origin="lower")
        ax.set_title(name)
    grid_axes = panels[3]
    grid_axes.imshow(_slice(warped, axis), cmap="gray", origin="lower", alpha=0.4)
    middle = displacement.shape[axis] // 2
    rows = np.take(voxels, middle, axis=axis)  # (A, B, 3), A and B the in-plane axes
    a_index, b_index = np.meshgrid(np.arange(rows.shape[0]), np.arange(rows.shape[1]), indexing="ij")
    a_moved = a_index + rows[..., in_plane[0]]
    b_moved = b_index + rows[..., in_plane[1]]
    for a in range(0, rows.shape[0], GRID_EVERY):
        grid_axes.plot(a_moved[a, :], b_moved[a, :], color="#d62728", linewidth=0.6)
    for b in range(0, rows.shape[1], GRID_EVERY):
        grid_axes.plot(a_moved[:, b], b_moved[:, b], color="#d62728", linewidth=0.6)
    grid_axes.set_xlim(-0.5, rows.shape[0] - 0.5)
    grid_axes.set_ylim(-0.5, rows.shape[1] - 0.5)
    grid_axes.set_title("warped grid")
    magnitude = panels[4].imshow(_slice(np.linalg.norm(displacement, axis=-1), axis), cmap="magma", origin="lower")
    figure.colorbar(magnitude, ax=panels[4], fraction=0.046, pad=0.04)
    panels[4].set_title("|u| (mm)")
    for ax in panels:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title)
    return _save(figure, path)
