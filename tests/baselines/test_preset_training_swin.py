"""The Swin-transformer baseline presets (TransMorph, TransMatch) through the real training command
(shrunk): falling loss, metrics.json, and a best checkpoint that reloads and registers a pair."""

import pytest

from llamareg.commands.train import run


@pytest.mark.parametrize("preset", ["cpu-transmorph", "cpu-transmatch"])
def test_preset_trains_with_falling_loss_and_its_checkpoint_registers(preset, preset_runs, tmp_path):
    config = preset_runs.tiny(preset, tmp_path, "train.max_iters=6", "train.val_every=6")
    metrics = run(config)
    assert metrics["iterations"] == 6 and [entry["iteration"] for entry in metrics["losses"]] == list(range(1, 7))
    preset_runs.check_trained(config, metrics, tmp_path)
    preset_runs.check_reload_and_register(tmp_path / "checkpoints" / "best.pt")
