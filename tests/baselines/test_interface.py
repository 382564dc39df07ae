"""What every baseline shares: output shapes for two input shapes, start near identity, input checks,
parameter bookkeeping, and a short training run that lowers the loss and registers a pair."""

import pytest
import torch

from llamareg.baselines import CPU_SCALING, SCALE_WEIGHTS, build_baseline

NAMES = ["voxelmorph", "lapirn", "transmorph", "transmatch"]
SHAPES = [(32, 32, 32), (32, 48, 32)]


def build(name, shape, seed=0):
    torch.manual_seed(seed)
    return build_baseline(name, shape, **CPU_SCALING[name])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_outputs_follow_the_input_shape(name, shape):
    model = build(name, shape)
    moving, fixed = torch.rand(2, 1, *shape), torch.rand(2, 1, *shape)
    with torch.no_grad():
        out = model(moving, fixed)
    flows = out["flows"]
    full = torch.tensor(shape)
    expected_scales = (4, 2, 1) if name == "lapirn" else (1,)
    assert [tuple(f.shape) for f in flows] == [(2, 3, *(full // s).tolist()) for s in expected_scales]
    assert all(f.dtype == torch.float32 for f in flows)
    assert out["warped"].shape == moving.shape and out["warped"].dtype == moving.dtype
    assert out["full_flow"] is flows[-1]
    assert len(SCALE_WEIGHTS[name]) == len(flows)


@pytest.mark.parametrize("name", NAMES)
def test_starts_near_identity(name):
    model = build(name, (32, 32, 32))
    moving, fixed = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        out = model(moving, fixed)
    assert max(f.abs().max().item() for f in out["flows"]) < 1e-2
    assert torch.allclose(out["warped"], moving, atol=1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_shapes_off_the_stride_and_mismatched_pairs(name):
    model = build(name, (32, 32, 32))
    bad = (32, 32, 32 + model.stride // 2)
    with pytest.raises(ValueError, match=f"divisible by {model.stride}"):
        model(torch.rand(1, 1, *bad), torch.rand(1, 1, *bad))
    with pytest.raises(ValueError, match="one shape"):
        model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 48, 32))
    with pytest.raises(ValueError, match="one shape"):
        model(torch.rand(1, 2, 32, 32, 32), torch.rand(1, 2, 32, 32, 32))
    with pytest.raises(ValueError, match=f"divisible by {model.stride}"):
        build(name, bad)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_split_trainable_and_frozen(name):
    model = build(name, (32, 32, 32))
    counts = model.parameter_counts()
    total = sum(p.numel() for p in model.parameters())
    assert counts == {"trainable": total, "frozen": 0}
    assert sum(p.numel() for p in model.trainable_parameters()) == total
    next(model.parameters()).requires_grad_(False)
    assert model.parameter_counts()["frozen"] == next(model.parameters()).numel()


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_loss_and_registers_the_pair(name, blob_pair, fit, falling, registers):
    model = build(name, (32, 32, 32))
    moving, fixed = blob_pair((32, 32, 32))
    losses = fit(model, moving, fixed, SCALE_WEIGHTS[name], iterations=12, lr=1e-3)
    assert falling(losses), losses
    assert registers(model, moving, fixed)


@pytest.mark.parametrize("name", NAMES)
def test_runs_with_half_precision_weights_and_inputs(name):
    # As a DeepSpeed bf16 model: every tensor in bfloat16 (on the CPU too, where some pooling has no bf16 kernel).
    model = build(name, (32, 32, 32)).to(torch.bfloat16)
    moving = torch.rand(1, 1, 32, 32, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(moving, moving)
    assert out["flows"][-1].dtype == torch.bfloat16 and out["warped"].dtype == torch.bfloat16
    assert all(torch.isfinite(f.float()).all() for f in out["flows"])
