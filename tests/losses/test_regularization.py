from __future__ import annotations

import pytest
import torch

from llamareg.losses.regularization import DiffusionRegularizer, diffusion
from llamareg.spatial.functional import identity_grid


def test_diffusion_of_constant_flow_is_zero():
    flow = torch.tensor([1.0, -2.0, 3.5]).view(1, 3, 1, 1, 1).expand(2, 3, 4, 5, 6)
    assert diffusion(flow).item() == 0.0


def test_diffusion_of_linear_ramp_is_slope_squared_over_nine():
    # One of three components has slope a along one of three axes: (a^2 / 3) / 3.
    slope = 0.6
    flow = torch.zeros(1, 3, 5, 6, 7)
    flow[:, 2] = slope * identity_grid((5, 6, 7))[:, 1]
    assert diffusion(flow).item() == pytest.approx(slope**2 / 9)
    assert DiffusionRegularizer()(flow).item() == pytest.approx(slope**2 / 9)


def test_diffusion_of_full_gradient_field_matches_hand_value():
    # u = x (identity displacement): each component has slope 1 along its own axis only -> 3 * (1/3) / 3.
    flow = identity_grid((4, 4, 4)).clone()
    assert diffusion(flow).item() == pytest.approx(1 / 3)


def test_diffusion_rejects_non_flow_input():
    with pytest.raises(ValueError, match="flow must have shape"):
        diffusion(torch.zeros(1, 2, 4, 4, 4))
