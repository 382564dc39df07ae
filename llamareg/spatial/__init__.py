"""Spatial transforms on dense displacement fields: warping, composition, integration, resizing."""

from llamareg.spatial.functional import (
    compose,
    identity_grid,
    integrate_velocity,
    jacobian_determinant,
    resize_flow,
    resize_image,
    warp,
)
from llamareg.spatial.modules import FlowResizer, SpatialTransformer, VelocityIntegrator

__all__ = [
    "FlowResizer",
    "SpatialTransformer",
    "VelocityIntegrator",
    "compose",
    "identity_grid",
    "integrate_velocity",
    "jacobian_determinant",
    "resize_flow",
    "resize_image",
    "warp",
]
