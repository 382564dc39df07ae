"""Shared helpers for the baseline tests: a smooth synthetic pair and a short training loop."""

import pytest
import torch

from llamareg.training.objective import objective_images
from llamareg.losses.similarity import mse
from llamareg.spatial.functional import identity_grid
from llamareg.training.objective import MultiScaleObjective


def blob(shape, centre, sigma):
    offset = identity_grid(shape) - torch.tensor(centre, dtype=torch.float32).view(1, 3, 1, 1, 1)
    return torch.exp(-(offset**2).sum(dim=1, keepdim=True) / (2 * sigma**2))


@pytest.fixture
def blob_pair():
    """``blob_pair(shape)``: a Gaussian blob (moving) and the same blob shifted by a few voxels (fixed)."""

    def make(shape, shift=(2.0, -2.0, 1.5)):
        centre = [s / 2 - 0.5 for s in shape]
        sigma = min(shape) / 6
        moving = blob(shape, centre, sigma)
        fixed = blob(shape, [c + d for c, d in zip(centre, shift)], sigma)
        return moving, fixed

    return make


@pytest.fixture
def fit():
    """``fit(model, moving, fixed, scale_weights, iterations, lr)``: Adam on the multi-scale MSE objective;
    returns the losses."""

    def run(model, moving, fixed, scale_weights, iterations, lr=2e-3):
        objective = MultiScaleObjective("mse", 0.01, scale_weights)
        optimizer = torch.optim.Adam(model.trainable_parameters(), lr=lr)
        losses = []
        for _ in range(iterations):
            optimizer.zero_grad()
            flows = model(moving, fixed)["flows"]
            loss, _ = objective(*objective_images(moving, fixed, flows), flows)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    return run


@pytest.fixture
def falling():
    """``falling(losses)``: the mean of the last 3 losses is below the mean of the first 3."""

    def check(losses, window=3):
        return sum(losses[-window:]) / window < sum(losses[:window]) / window

    return check


@pytest.fixture
def registers():
    """``registers(model, moving, fixed)``: the warped image is closer (MSE) to ``fixed`` than ``moving`` was."""

    def check(model, moving, fixed):
        with torch.no_grad():
            warped = model(moving, fixed)["warped"]
        return mse(warped, fixed).item() < mse(moving, fixed).item()

    return check


# ----------------------------------------------------------------------------- the presets through the real training loop
# Like tests/conftest.py's TINY_RUN, for baselines: 32^3 volumes of the template data with two training
# subjects (so each of the two pairs recurs and its loss can be followed; synthetic pairs never recur),
# MSE as that data's recipe, two validation pairs, no MLflow.
TINY_BASELINE = [
    "data.source=template",
    "train.flow_weight=0",
    "train.similarity=mse",
    "train.reg_weight=0.02",
    "data.shape=[32, 32, 32]",
    "data.num_train_subjects=2",
    "data.num_val_subjects=3",
    "data.num_val_pairs=2",
    "train.log_every=1",
    "train.lr=0.002",
    "tracking.enabled=false",
]


class PresetRuns:
    """Helpers for running a baseline preset shrunk to seconds (``tiny``) and inspecting the result."""

    @staticmethod
    def tiny(preset, out, *overrides):
        from llamareg.config import load_config

        return load_config(preset, [*TINY_BASELINE, f"train.out={out}", *overrides])

    @staticmethod
    def losses_by_pair(config, losses):
        """The logged losses grouped by training pair ((moving, fixed) subject indices), in order; the loss
        logged at iteration ``i`` (batch 1, no accumulation) is that of training example ``i - 1``."""
        from llamareg.data.factory import build_pair_datasets

        train_pairs, _ = build_pair_datasets(config)
        groups = {}
        for entry in losses:
            groups.setdefault(train_pairs.pair_indices(entry["iteration"] - 1), []).append(entry["loss"])
        return groups

    @staticmethod
    def reload(path):
        """The checkpoint loaded as ``llamareg register`` loads it (a freshly built model from its own config,
        with its weights), its config and its payload."""
        from llamareg.inference.model_io import load_trained_model
        from llamareg.training.checkpoint import read_checkpoint

        trained = load_trained_model(path, device="cpu")
        return trained.model, trained.config, read_checkpoint(path)

    @staticmethod
    def val_batches(config):
        from llamareg.data.factory import build_pair_datasets

        _, val_pairs = build_pair_datasets(config)
        return torch.utils.data.DataLoader(val_pairs)

    @classmethod
    def check_trained(cls, config, metrics, out, frozen=0):
        """metrics.json written with Dice; the loss of each of the two training pairs falls."""
        import json

        written = json.loads((out / "metrics.json").read_text())
        assert written["architecture"] == config.model.architecture and written["llm"] is None
        assert 0 < written["val_dice"] < 1 and 0 < written["val_dice_identity"] < 1
        assert written["parameters"]["frozen"] == frozen
        for pair, losses in cls.losses_by_pair(config, metrics["losses"]).items():
            assert len(losses) >= 2, pair
            assert losses[-1] < losses[0], (pair, losses)

    @classmethod
    def check_reload_and_register(cls, checkpoint):
        """The checkpoint, loaded as the register/evaluate commands load it, registers the validation pairs
        as they were registered when it was saved (its recorded best Dice, exactly), with one field."""
        from llamareg.training.precision import Precision
        from llamareg.training.validation import evaluate

        cpu = torch.device("cpu")
        model, config, payload = cls.reload(checkpoint)
        assert payload["llm_source"] is None
        result = evaluate(model, cls.val_batches(config), cpu, Precision.resolve("fp32", cpu))
        assert result["dice"] == pytest.approx(payload["best_dice"], abs=1e-12)
        pair = next(iter(cls.val_batches(config)))
        with torch.no_grad():
            outputs = model(pair["moving"], pair["fixed"])
        assert torch.equal(outputs["flows"][-1], outputs["full_flow"])


@pytest.fixture
def preset_runs():
    return PresetRuns
