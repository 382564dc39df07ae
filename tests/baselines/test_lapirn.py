"""LapIRN: levels and their resolutions, the level-by-level schedule, frozen coarse levels."""

import pytest
import torch

from llamareg.baselines import CPU_SCALING, LapIRN
from llamareg.training.objective import objective_images
from llamareg.spatial.functional import resize_flow


def build(**sizes):
    torch.manual_seed(0)
    return LapIRN((32, 32, 32), **{**CPU_SCALING["lapirn"], **sizes})


def test_train_levels_sets_the_active_levels_and_what_trains():
    model = build()
    model.train_levels(1)
    assert model.active_levels == 1
    assert [any(p.requires_grad for p in level.parameters()) for level in model.levels] == [True, False, False]
    model.train_levels(3)
    assert [any(p.requires_grad for p in level.parameters()) for level in model.levels] == [False, False, True]
    assert model.parameter_counts()["frozen"] == sum(p.numel() for level in model.levels[:2] for p in level.parameters())
    model.train_levels(2, freeze_coarser=False)
    assert [all(p.requires_grad for p in level.parameters()) for level in model.levels] == [True, True, False]
    for bad in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match="active_levels"):
            model.train_levels(bad)
    with pytest.raises(ValueError, match="active_levels"):
        LapIRN((32, 32, 32), active_levels=0)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_each_active_level_adds_a_flow_at_its_resolution(levels):
    model = build()
    model.train_levels(levels)
    moving, fixed = torch.rand(1, 1, 32, 48, 32), torch.rand(1, 1, 32, 48, 32)
    with torch.no_grad():
        out = model(moving, fixed)
    sizes = [(8, 12, 8), (16, 24, 16), (32, 48, 32)][:levels]
    assert [tuple(f.shape[2:]) for f in out["flows"]] == sizes
    assert out["warped"].shape == moving.shape
    assert torch.allclose(out["full_flow"], resize_flow(out["flows"][-1], (32, 48, 32)))
    m, f = objective_images(moving, fixed, out["flows"])
    assert m.shape[2:] == out["flows"][-1].shape[2:] == f.shape[2:]


def test_coarser_levels_feed_the_finer_ones():
    model = build()
    moving, fixed = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        for parameter in model.levels[0].head[2].parameters():
            parameter.normal_(std=0.2)  # give level 1 a visible field
        model.train_levels(1)
        coarse = model(moving, fixed)["flows"][0]
        model.train_levels(3)
        flows = model(moving, fixed)["flows"]
    assert torch.equal(flows[0], coarse)  # level 1 does not depend on the levels after it
    # Levels 2 and 3 start near zero, so their fields are the upsampled coarse field plus a small residual.
    assert torch.allclose(flows[1], resize_flow(coarse, (16, 16, 16)), atol=1e-2)
    assert flows[0].abs().max() > 0.1


def test_level_by_level_training_with_frozen_coarse_levels(blob_pair, fit, falling, registers):
    model = build()
    moving, fixed = blob_pair((32, 32, 32))
    model.train_levels(1)
    losses = fit(model, moving, fixed, [1.0], iterations=10, lr=2e-3)
    assert falling(losses), losses
    level1 = {k: v.clone() for k, v in model.levels[0].state_dict().items()}
    model.train_levels(2)  # level 1 frozen for the warm-up
    losses = fit(model, moving, fixed, [0.0, 1.0], iterations=6, lr=2e-3)
    assert all(torch.equal(level1[k], v) for k, v in model.levels[0].state_dict().items())
    model.train_levels(3, freeze_coarser=False)  # then every level trains
    losses = fit(model, moving, fixed, [0.0, 0.0, 1.0], iterations=6, lr=1e-3)
    assert falling(losses), losses
    assert not all(torch.equal(level1[k], v) for k, v in model.levels[0].state_dict().items())
    assert registers(model, moving, fixed)


def test_frozen_levels_run_without_autograd():
    model = build()
    model.train_levels(3)
    out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
    assert not out["flows"][0].requires_grad and not out["flows"][1].requires_grad
    assert out["flows"][2].requires_grad


def test_compose_combination_and_argument_checks():
    model = build(combination="compose")
    with torch.no_grad():
        out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
    assert len(out["flows"]) == 3
    with pytest.raises(ValueError, match="combination"):
        LapIRN((32, 32, 32), combination="mean")
    with pytest.raises(ValueError, match="features"):
        LapIRN((32, 32, 32), features=0)
    with pytest.raises(ValueError, match="range_flow"):
        LapIRN((32, 32, 32), range_flow=0.0)
    with pytest.raises(ValueError, match="divisible by 8"):
        LapIRN((32, 36, 32))
