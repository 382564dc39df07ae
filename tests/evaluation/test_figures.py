"""Figures are written as non-blank PNGs, atomically, from plain arrays."""

import numpy as np
from matplotlib.image import imread

from llamareg.evaluation.figures import dice_boxplot, pair_figure
from llamareg.evaluation.pair_metrics import PairMetrics


def _assert_png(path):
    assert path.read_bytes()[:4] == b"\x89PNG"
    pixels = imread(path)
    assert pixels.std() > 0.01
    assert not list(path.parent.glob("*.tmp"))
    return pixels


def test_dice_boxplot(tmp_path):
    metrics = [
        PairMetrics([1, 2], [0.8, 0.7], [0.6, 0.5], [1.0, 1.0], [2.0, 2.0], 0.0, 0.3, 0.0, 1.0),
        PairMetrics([1, 3], [0.9, float("nan")], [0.7, 0.2], [1.0, 1.0], [2.0, 2.0], 0.0, 0.3, 0.0, 1.0),
    ]
    _assert_png(dice_boxplot(tmp_path / "box.png", metrics, "LLaMA-Reg"))


def test_pair_figure_on_a_permuted_grid(tmp_path):
    shape = (20, 24, 16)
    rng = np.random.default_rng(0)
    fixed, moving, warped = (rng.random(shape).astype(np.float32) for _ in range(3))
    displacement = np.zeros((*shape, 3), np.float32)
    displacement[..., 0] = np.linspace(0, 4, shape[0])[:, None, None]
    affine = np.array([[0, 0, -2.0, 0], [0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])  # axis 0 runs along S
    pixels = _assert_png(pair_figure(tmp_path / "pair.png", fixed, moving, warped, displacement, affine, "pair 0"))
    assert pixels.shape[1] > 3 * pixels.shape[0]  # five panels side by side
