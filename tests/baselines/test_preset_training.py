"""The baseline presets through the real training command (shrunk): falling loss, metrics.json, and
a best checkpoint that reloads into a freshly built model and registers a pair as it did in training."""

import importlib.util
import json

import pytest

from llamareg.commands.train import run

HAVE_VOXELMORPH = importlib.util.find_spec("voxelmorph") is not None


@pytest.mark.parametrize(
    "preset",
    [
        "cpu-voxelmorph",
        "cpu-transmorph",
        "cpu-transmatch",
        pytest.param("cpu-voxelmorph-package", marks=pytest.mark.skipif(not HAVE_VOXELMORPH, reason="voxelmorph package not installed")),
    ],
)
def test_preset_trains_with_falling_loss_and_its_checkpoint_registers(preset, preset_runs, tmp_path):
    config = preset_runs.tiny(preset, tmp_path, "train.max_iters=6", "train.val_every=6")
    metrics = run(config)
    assert metrics["iterations"] == 6 and [entry["iteration"] for entry in metrics["losses"]] == list(range(1, 7))
    preset_runs.check_trained(config, metrics, tmp_path)
    preset_runs.check_reload_and_register(tmp_path / "checkpoints" / "best.pt")


def test_lapirn_preset_trains_level_by_level_and_its_checkpoint_registers(preset_runs, tmp_path):
    config = preset_runs.tiny("cpu-lapirn", tmp_path, "train.step_iters=[6, 1, 2, 1, 2]", "train.val_every=6")
    metrics = run(config)
    assert [entry["iterations"] for entry in metrics["steps"]] == [6, 1, 2, 1, 2]
    # Level 1 alone (levels 2 and 3 frozen): its two pairs' losses fall.
    level1 = json.loads((tmp_path / "level1" / "metrics.json").read_text())
    model, _, _ = preset_runs.reload(tmp_path / "level1" / "checkpoints" / "best.pt")
    finer = sum(p.numel() for p in [*model.levels[1].parameters(), *model.levels[2].parameters()])
    preset_runs.check_trained(preset_runs.tiny("cpu-lapirn", tmp_path), level1, tmp_path / "level1", frozen=finer)
    preset_runs.check_reload_and_register(tmp_path / "checkpoints" / "best.pt")
