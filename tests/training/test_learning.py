"""The trainer learns: validation Dice on held-out pairs rises above identity.

The shared run is of the template preset (tests/conftest.py), which learns within the suite's budget;
whether a model registers anatomy it never saw is measured by benchmarks/generalization.py.
"""


def test_template_preset_beats_identity_after_150_iterations(trained_run):
    # The shared run (tests/conftest.py): the first 150 iterations of the cpu-template preset.
    metrics = trained_run.metrics
    assert metrics["iterations"] == 150
    assert metrics["val_dice"] > metrics["val_dice_identity"] + 0.02
    assert metrics["val_folding_pct"] < 1.0
    losses = [entry["loss"] for entry in metrics["losses"]]
    assert sum(losses[-3:]) < sum(losses[:3])
