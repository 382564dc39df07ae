"""Training really registers: validation Dice on held-out pairs rises above identity."""


def test_default_preset_beats_identity_after_150_iterations(trained_run):
    # The shared run (tests/conftest.py): the first 150 iterations of the cpu-default preset.
    metrics = trained_run.metrics
    assert metrics["iterations"] == 150
    assert metrics["val_dice"] > metrics["val_dice_identity"] + 0.02
    assert metrics["val_folding_pct"] < 1.0
    losses = [entry["loss"] for entry in metrics["losses"]]
    assert sum(losses[-3:]) < sum(losses[:3])
