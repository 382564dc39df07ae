"""The voxelmorph PyPI package's own model (``voxelmorph.nn.models.VxmPairwise``) behind the baselines' interface.

An external reference for the comparison: the network is the package's, unchanged; only its output
is wrapped into ``{"flows", "warped", "full_flow"}`` so that it trains through llamareg's loop, losses
and checkpoints. The package (voxelmorph >= 0.3, PyTorch-native, with neurite) is an optional
dependency: ``pip install -e .[compare]``.

Its displacement convention is llamareg's: voxel units, channel ``k`` along spatial axis ``k``,
``warped(x) = moving(x + u(x))`` sampled with ``align_corners=True`` (the package pads with zeros
where llamareg repeats the border; the field is the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llamareg.baselines.common import RegistrationNetwork
from llamareg.checks import check_int_sequence, check_shape


def import_voxelmorph():
    """The ``voxelmorph`` module, or ValueError saying how to install it."""
    try:
        import voxelmorph
    except ImportError as error:
        raise ValueError(
            f"model.architecture=voxelmorph-package needs the voxelmorph package (>= 0.3, PyTorch): "
            f"pip install -e .[compare] ({type(error).__name__}: {error})"
        ) from None
    if not hasattr(getattr(voxelmorph, "nn", None), "models"):
        raise ValueError(
            f"voxelmorph {getattr(voxelmorph, '__version__', '?')} has no PyTorch models (voxelmorph.nn.models); install voxelmorph>=0.3"
        )
    return voxelmorph


class VoxelMorphPackage(RegistrationNetwork):
    """``voxelmorph.nn.models.VxmPairwise(ndim=3, 1, 1, ...)``: the package's U-Net (BasicUNet, ReLU) and flow
    layer; with ``integration_steps`` > 0 a stationary velocity field integrated by scaling and squaring.

    Package defaults: ``nb_features=(16, 16, 16, 16, 16)`` (five levels: sides divisible by 32) and
    ``integration_steps=5``. The CPU preset keeps 16 features and the integration but uses four
    levels (sides divisible by 16, as 48x64x48 needs).

    Args:
        shape: Input shape the model is built for; each side divisible by ``2 ** (len(nb_features) - 1)``.
        nb_features: Features per U-Net level.
        integration_steps: Scaling-and-squaring steps (0: the output is the displacement).

    """

    def __init__(self, shape: Sequence[int], nb_features: Sequence[int] = (16, 16, 16, 16, 16), integration_steps: int = 5) -> None:
        super().__init__()
        vxm = import_voxelmorph()
        features = check_int_sequence(nb_features, "nb_features")
        if isinstance(integration_steps, bool) or not isinstance(integration_steps, int) or integration_steps < 0:
            raise ValueError(f"integration_steps must be a non-negative integer, got {integration_steps!r}")
        self.stride = 2 ** (len(features) - 1)
        self.shape = check_shape(shape, "voxelmorph-package shape", multiple=self.stride)
        self.network = vxm.nn.models.VxmPairwise(
            ndim=3, source_channels=1, target_channels=1, nb_features=features, integration_steps=integration_steps
        )

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, object]:
        """Register ``moving`` to ``fixed`` (both ``(B, 1, D, H, W)``); ``flows`` holds the package's displacement."""
        moving, fixed = self._checked_pair(moving, fixed)
        displacement = self.network(moving, fixed, return_field_type="displacement")
        return self._outputs(moving, [displacement])
