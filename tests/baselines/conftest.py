"""Shared helpers for the baseline tests: a smooth synthetic pair and a short training loop."""

import pytest
import torch

from llamareg.baselines import objective_images
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
