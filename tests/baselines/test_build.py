"""The builder, the CPU sizes and the published-size parameter counts."""

import pytest

from llamareg.baselines import BASELINES, CPU_SCALING, PUBLISHED, SCALE_WEIGHTS, TransMatch, build_baseline


def test_builder_knows_every_method_and_checks_names_and_sizes():
    assert sorted(BASELINES) == sorted(CPU_SCALING) == sorted(PUBLISHED) == sorted(SCALE_WEIGHTS)
    assert isinstance(build_baseline("VoxelMorph", (32, 32, 32)), BASELINES["voxelmorph"])
    with pytest.raises(ValueError, match="baseline name must be one of"):
        build_baseline("syn", (32, 32, 32))
    with pytest.raises(ValueError, match="no size"):
        build_baseline("lapirn", (32, 32, 32), base_channels=8)


@pytest.mark.parametrize("name", sorted(CPU_SCALING))
@pytest.mark.parametrize("shape", [(48, 64, 48), (32, 48, 32)])
def test_cpu_sizes_build_for_the_cpu_volumes(name, shape):
    model = build_baseline(name, shape, **CPU_SCALING[name])
    assert all(s % model.stride == 0 for s in shape)
    assert model.parameter_counts()["trainable"] < 2_000_000  # CPU scale: at most a few percent of the published sizes


@pytest.mark.parametrize("name", ["voxelmorph", "lapirn", "transmorph"])
def test_published_configurations_reproduce_the_papers_parameter_counts(name):
    # Build only (no forward at full shape): parameters do not depend on the input shape.
    model = build_baseline(name, PUBLISHED[name]["shape"])
    count = model.parameter_counts()["trainable"]
    assert abs(count - PUBLISHED[name]["parameters"]) / PUBLISHED[name]["parameters"] < 0.02, count


def swin_block_parameters(dim, heads, window, mlp_ratio=4):
    table = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
    hidden = mlp_ratio * dim
    return 4 * dim + 3 * dim * dim + dim * dim + dim + table * heads + dim * hidden + hidden + hidden * dim + dim


def swin_encoder_parameters(in_channels, embed_dim, depths, heads, window, patch=4):
    total = in_channels * patch**3 * embed_dim + embed_dim + 2 * embed_dim  # patch embedding and its norm
    for stage, (depth, h) in enumerate(zip(depths, heads)):
        dim = embed_dim * 2**stage
        total += depth * swin_block_parameters(dim, h, window) + 2 * dim  # blocks and the output norm
        if stage < len(depths) - 1:
            total += 2 * 8 * dim + 8 * dim * 2 * dim  # patch merging: norm and reduction
    return total


def test_published_swin_encoders_match_the_architecture_arithmetic():
    transmorph = build_baseline("transmorph", PUBLISHED["transmorph"]["shape"])
    assert sum(p.numel() for p in transmorph.encoder.parameters()) == swin_encoder_parameters(2, 96, (2, 2, 4, 2), (4, 4, 8, 8), (5, 6, 7))
    dual = build_baseline("transmatch", PUBLISHED["transmatch"]["shape"])
    encoder = sum(p.numel() for p in dual.moving_encoder.parameters())
    assert encoder == swin_encoder_parameters(1, 96, (2, 2, 4, 2), (4, 4, 8, 8), (5, 6, 5))
    cross = sum(2 * swin_block_parameters(96 * 2**i, 4, (5, 6, 5)) + 2 * 96 * 2**i for i in range(4))  # LWCA: 2 blocks, 4 heads
    assert sum(p.numel() for p in dual.cross.parameters()) == cross
    total = dual.parameter_counts()["trainable"]
    assert total == 96_342_963
    assert total - encoder == TransMatch(PUBLISHED["transmatch"]["shape"], shared_encoder=True).parameter_counts()["trainable"]
