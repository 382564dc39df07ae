"""Instance optimisation lowers the pair's loss and never returns a worse field than it started from."""

import pytest
import torch

from llamareg.config import load_config
from llamareg.inference.refine import pair_objective, refine_flow
from llamareg.training.objective import MultiScaleObjective


def _blob_pair():
    coords = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"))
    blob = lambda centre: torch.exp(-((coords - torch.tensor(centre).view(3, 1, 1, 1)) ** 2).sum(0) / 18)[None, None]
    return blob([7.0, 8.0, 8.0]), blob([8.5, 8.0, 8.0])  # moving, fixed


def test_refinement_lowers_the_loss_and_moves_towards_the_fixed_image():
    moving, fixed = _blob_pair()
    objective = pair_objective(load_config("cpu-default", ["train.reg_weight=0.01"]))
    result = refine_flow(moving, fixed, torch.zeros(1, 3, 16, 16, 16), objective, steps=30, lr=0.1)
    assert result.steps == 30
    assert result.loss_after < 0.5 * result.loss_before
    recomputed, _ = objective(moving, fixed, [result.flow])
    assert recomputed.item() == pytest.approx(result.loss_after, rel=1e-5)
    # warped(x) = moving(x + u(x)): the fixed blob sits 1.5 voxels further along axis 0, so u_0 < 0 there.
    assert result.flow[0, 0, 8, 8, 8] < -0.3


def test_a_too_large_step_keeps_the_starting_field():
    _, fixed = _blob_pair()
    start = torch.zeros(1, 3, 16, 16, 16)
    result = refine_flow(fixed, fixed, start, MultiScaleObjective("mse", 1.0, [1.0]), steps=3, lr=50.0)
    assert result.loss_after == result.loss_before < 1e-12
    assert torch.equal(result.flow, start)


@pytest.mark.parametrize("steps, lr", [(0, 0.1), (2, 0.0)])
def test_bad_options(steps, lr):
    moving, fixed = _blob_pair()
    with pytest.raises(ValueError):
        refine_flow(moving, fixed, torch.zeros(1, 3, 16, 16, 16), MultiScaleObjective("mse", 0.0, [1.0]), steps, lr)
