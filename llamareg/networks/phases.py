"""A training phase that a network declares for itself, for recipes that train its parts in turn
(LapIRN: level 1, then level 2 with level 1 frozen, ...). The trainer's schedule runs the declared
phases one after the other without knowing what they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class DeclaredPhase:
    """One phase of a network's own training recipe.

    Attributes:
        name: The phase's folder under ``train.out`` and its MLflow child run.
        sizes: The ``model.sizes`` entries the network is built with in this phase (e.g. its active levels).
        fields: How many displacement fields the network returns in this phase; the objective weighs them
            with the last ``fields`` entries of ``train.scale_weights``.
        trains: What trains, recorded with the phase's parameters (e.g. ``{"lapirn_levels": 2}``).
        select: Makes the phase's parts of a built network trainable and freezes the rest.
    """

    name: str
    sizes: Mapping[str, Any]
    fields: int
    trains: Mapping[str, Any]
    select: Callable[[nn.Module], None] = field(compare=False)
