"""VoxelMorph: the vxm-1/vxm-2 decoders, the diffeomorphic variant, argument checks."""

import pytest
import torch

from llamareg.baselines import VoxelMorph
from llamareg.spatial.functional import jacobian_determinant

SMALL = {"encoder_features": (4, 8, 8, 8), "decoder_features": (8, 8, 8, 8, 8, 4, 4)}


def test_voxelmorph_1_has_one_full_resolution_conv_fewer():
    vm2 = VoxelMorph((32, 32, 32))
    vm1 = VoxelMorph((32, 32, 32), decoder_features=(32, 32, 32, 32, 8, 8))
    assert len(vm2.decoder) == 7 and len(vm1.decoder) == 6
    with torch.no_grad():
        out = vm1(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
    assert out["flows"][0].shape == (1, 3, 32, 32, 32)


@pytest.mark.parametrize("downsize", [1, 2])
def test_diffeomorphic_variant_integrates_a_velocity_field(downsize):
    torch.manual_seed(0)
    model = VoxelMorph((32, 48, 32), **SMALL, diffeomorphic=True, integration_downsize=downsize)
    with torch.no_grad():
        model.flow.weight.normal_(std=0.05)  # a large velocity, which integration keeps invertible
        out = model(torch.rand(1, 1, 32, 48, 32), torch.rand(1, 1, 32, 48, 32))
    flow = out["flows"][0]
    assert flow.shape == (1, 3, 32, 48, 32)
    assert flow.abs().max() > 0.1
    assert (jacobian_determinant(flow) > 0).all()


@pytest.mark.parametrize(
    "sizes,match",
    [
        ({"encoder_features": (16, 32, 32)}, "encoder_features"),
        ({"decoder_features": (32, 32, 32, 32, 32)}, "decoder_features"),
        ({"decoder_features": (32, 0, 32, 32, 32, 16, 16)}, "decoder_features"),
        ({"integration_steps": -1}, "integration_steps"),
        ({"integration_downsize": 4}, "integration_downsize"),
    ],
)
def test_rejects_bad_arguments(sizes, match):
    with pytest.raises(ValueError, match=match):
        VoxelMorph((32, 32, 32), **sizes)
