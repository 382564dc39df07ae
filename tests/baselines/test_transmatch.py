"""TransMatch: two encoders (or one shared), cross-attention between the streams, argument checks."""

import pytest
import torch

from llamareg.baselines import CPU_SCALING, TransMatch


def build(**sizes):
    torch.manual_seed(0)
    return TransMatch((32, 32, 32), **{**CPU_SCALING["transmatch"], **sizes})


def test_each_stream_has_its_own_encoder_unless_shared():
    dual, shared = build(), build(shared_encoder=True)
    assert dual.fixed_encoder is not dual.moving_encoder and shared.fixed_encoder is shared.moving_encoder
    encoder = sum(p.numel() for p in dual.moving_encoder.parameters())
    assert dual.parameter_counts()["trainable"] - shared.parameter_counts()["trainable"] == encoder
    assert len(dual.cross) == len(CPU_SCALING["transmatch"]["depths"])


def test_both_streams_and_their_matching_reach_the_field():
    model = build()
    moving, fixed = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    out = model(moving, fixed)
    out["flows"][0].pow(2).sum().backward()
    for name in (
        "moving_encoder.patch_embed.weight",
        "fixed_encoder.patch_embed.weight",
        "cross.0.blocks.1.attn.qkv.weight",
        "cross.2.blocks.0.attn.relative_position_bias_table",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="cross_heads"):
        build(cross_heads=5)
    with pytest.raises(ValueError, match="cross_depth"):
        build(cross_depth=0)
    with pytest.raises(ValueError, match="window_size"):
        build(window_size=(9, 4, 3))
    with pytest.raises(ValueError, match="divisible by 16"):
        TransMatch((32, 40, 32), **CPU_SCALING["transmatch"])
