from __future__ import annotations

import pytest
import torch

from llamareg.spatial.functional import integrate_velocity, resize_flow, warp
from llamareg.spatial.modules import FlowResizer, SpatialTransformer, VelocityIntegrator


def test_modules_match_the_functions_they_wrap_and_hold_no_parameters():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 6, 6, 6, generator=generator)
    flow = torch.randn(2, 3, 6, 6, 6, generator=generator)
    labels = (image * 5).long()
    modules = [SpatialTransformer(), SpatialTransformer("nearest"), VelocityIntegrator(3), FlowResizer()]
    assert all(len(list(module.parameters())) == 0 for module in modules)
    torch.testing.assert_close(modules[0](image, flow), warp(image, flow))
    assert torch.equal(modules[1](labels, flow), warp(labels, flow, mode="nearest"))
    torch.testing.assert_close(modules[2](flow), integrate_velocity(flow, steps=3))
    torch.testing.assert_close(modules[3](flow, (12, 12, 3)), resize_flow(flow, (12, 12, 3)))


def test_spatial_transformer_is_differentiable_in_image_and_flow():
    image = torch.rand(1, 1, 5, 5, 5, requires_grad=True)
    flow = torch.full((1, 3, 5, 5, 5), 0.3, requires_grad=True)
    SpatialTransformer()(image, flow).sum().backward()
    assert image.grad.abs().sum() > 0
    assert flow.grad.abs().sum() > 0


def test_modules_validate_configuration_at_construction():
    with pytest.raises(ValueError, match="mode must be one of"):
        SpatialTransformer("linear")
    with pytest.raises(ValueError, match="padding_mode"):
        SpatialTransformer(padding_mode="edge")
    with pytest.raises(ValueError, match="steps"):
        VelocityIntegrator(-1)
