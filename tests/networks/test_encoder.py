"""The dual-stream encoder: two streams of their own (the paper) or one shared stream."""

import pytest
import torch

from llamareg.networks.encoder import DualStreamEncoder


@pytest.mark.parametrize("shared", [False, True])
def test_both_images_get_the_pyramid_and_only_a_shared_stream_gives_them_the_same_features(shared):
    torch.manual_seed(0)
    encoder = DualStreamEncoder(base_channels=4, shared=shared)
    image = torch.rand(1, 1, 32, 32, 32)
    moving, fixed = encoder(image, image)
    assert [tuple(level.shape[1:]) for level in moving] == [(4 * 2**k, 32 // 2**k, 32 // 2**k, 32 // 2**k) for k in range(5)]
    assert all(torch.equal(m, f) for m, f in zip(moving, fixed)) == shared


def test_a_shared_stream_has_half_the_weights_each_stored_once():
    separate, shared = DualStreamEncoder(base_channels=4), DualStreamEncoder(base_channels=4, shared=True)
    count = sum(p.numel() for p in separate.parameters())
    assert 2 * sum(p.numel() for p in shared.parameters()) == count
    assert sum(t.numel() for t in shared.state_dict().values()) == count // 2  # no tensor saved twice


def test_the_shared_stream_learns_from_both_images():
    encoder = DualStreamEncoder(base_channels=4, shared=True)
    moving, fixed = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    first = encoder.stream.full[0]
    encoder(moving, fixed)[1][-1].sum().backward()  # the fixed image's features only
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
