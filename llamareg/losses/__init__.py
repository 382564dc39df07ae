"""Registration losses: image similarity and displacement smoothness."""

from llamareg.losses.regularization import DiffusionRegularizer, diffusion
from llamareg.losses.similarity import (
    SIMILARITY_NAMES,
    LocalNCCLoss,
    MSELoss,
    local_ncc,
    mse,
    similarity_loss,
)

__all__ = [
    "SIMILARITY_NAMES",
    "DiffusionRegularizer",
    "LocalNCCLoss",
    "MSELoss",
    "diffusion",
    "local_ncc",
    "mse",
    "similarity_loss",
]
