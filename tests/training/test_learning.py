"""Training really registers: validation Dice on held-out pairs rises above identity."""

from llamareg.commands.train import run
from llamareg.config import load_config


def test_default_preset_beats_identity_after_150_iterations(tmp_path):
    # The cpu-default run cut to a third of its iterations (about 3 minutes here): pair i depends only on
    # the seed and i, so this is exactly the first third of `make demo`.
    config = load_config("cpu-default", ["train.max_iters=150", "train.val_every=150", f"train.out={tmp_path}"])
    metrics = run(config)
    assert metrics["val_dice"] > metrics["val_dice_identity"] + 0.02
    assert metrics["val_folding_pct"] < 1.0
    losses = [entry["loss"] for entry in metrics["losses"]]
    assert sum(losses[-3:]) < sum(losses[:3])
