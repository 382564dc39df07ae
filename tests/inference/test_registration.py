"""The model grid a trained network sees: the training voxel size, sides a multiple of its stride."""

from pathlib import Path

import numpy as np
import pytest
import torch

from llamareg.config import load_config
from llamareg.inference.grid import Grid
from llamareg.inference.model_io import TrainedModel
from llamareg.inference.registration import input_multiple, model_grid_for
from llamareg.models import build_model
from llamareg.training.precision import Precision

# TransMorph with the published four stages (stride 4 x 2^3 = 32), tiny widths.
FOUR_STAGE_TRANSMORPH = [
    "data.shape=[64, 64, 64]",
    "model.sizes.embed_dim=4",
    "model.sizes.depths=[1, 1, 1, 1]",
    "model.sizes.num_heads=[1, 1, 1, 1]",
    "model.sizes.window_size=[2, 2, 2]",
]


def _trained(preset, overrides):
    config = load_config(preset, [*overrides, "tracking.enabled=false"])
    cpu = torch.device("cpu")
    return TrainedModel(build_model(config), config, cpu, Precision.resolve("fp32", cpu), Path(f"{preset}.pt"))


def test_sides_are_multiples_of_the_network_stride(small_model):
    assert input_multiple(small_model) == 16
    transmorph = _trained("cpu-transmorph", FOUR_STAGE_TRANSMORPH)
    assert input_multiple(transmorph.model) == 32
    one_mm = Grid((40, 40, 40), np.eye(4))  # 40 mm: 12.3 voxels of 3.25 mm
    grid = model_grid_for(transmorph, one_mm)
    assert grid.shape == (32, 32, 32) and grid.spacing == (3.25, 3.25, 3.25)
    assert model_grid_for(transmorph, one_mm, spacing=1.0, shape=(64, 32, 32)).shape == (64, 32, 32)
    with pytest.raises(ValueError, match="--shape must be three multiples of 32"):
        model_grid_for(transmorph, one_mm, shape=(48, 32, 32))
    with pytest.raises(ValueError, match="--spacing"):
        model_grid_for(transmorph, one_mm, spacing=-1.0)


def test_symmetric_flow_is_zero_for_one_image_and_keeps_an_antisymmetric_field():
    import torch

    from llamareg.inference.registration import symmetric_flow

    forward = torch.randn(1, 3, 4, 4, 4)
    assert symmetric_flow(forward, forward).abs().max() == 0  # the same field both ways: self-registration
    assert torch.allclose(symmetric_flow(forward, -forward), forward)
