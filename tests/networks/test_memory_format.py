"""Channels-last convolutions: the same loss and gradients as contiguous ones, for LLaMA-Reg and every
baseline, and the layout chosen by the factory per device and precision."""

import pytest
import torch

from llamareg.config import load_config
from llamareg.models import build_model
from llamareg.networks.memory_format import contiguous_weights, memory_format_of, resolve_memory_format
from llamareg.training.objective import MultiScaleObjective


def _step(config, moving, fixed, dtype=torch.float32):
    torch.manual_seed(0)
    model = build_model(config).to(dtype)
    moving, fixed = moving.to(dtype), fixed.to(dtype)
    objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, config.train.scale_weights)
    loss = objective(moving, fixed, model(moving, fixed)["flows"])[0]
    loss.backward()
    return model, loss.item(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "preset, shape",
    [
        ("cpu-default", (32, 32, 32)),
        ("cpu-voxelmorph", (32, 32, 32)),
        ("cpu-lapirn", (32, 32, 32)),
        ("cpu-transmorph", (32, 32, 32)),
        ("cpu-transmatch", (32, 32, 32)),
    ],
)
def test_channels_last_gives_the_contiguous_loss_and_gradients(preset, shape, smooth_pair):
    # 32^3: at 64^3 a few of TransMorph's 4M LeakyReLU inputs lie within float rounding of 0, and one
    # that changes side changes that voxel's gradient 100-fold (about 1e-3 of the gradient's norm),
    # in either layout against float64.
    moving, fixed = smooth_pair(shape)
    results = {}
    for layout in ("contiguous", "channels_last"):
        config = load_config(preset, [f"data.shape=[{', '.join(map(str, shape))}]", f"model.memory_format={layout}", "train.device=cpu"])
        model, loss, grads = _step(config, moving, fixed)
        assert memory_format_of(model) == layout
        results[layout] = (loss, grads)
    (reference_loss, reference), (loss, grads) = results["contiguous"], results["channels_last"]
    assert loss == pytest.approx(reference_loss, rel=1e-5)
    assert grads.keys() == reference.keys() and grads
    far = [name for name, g_ref in reference.items() if (grads[name] - g_ref).norm() > 1e-4 * g_ref.norm() + 1e-12]
    if far:
        # Encoder gradients are sums of near-cancelling terms 1e3 times smaller than the flow heads'
        # (the heads start near zero), so on some CPUs float32 rounding alone moves one of them by
        # 1.3e-4 of its norm in either layout. There the fast layout must be as close to float64 as
        # the contiguous one is, within a factor of 10 or 1e-3 of the norm (cpu-default's output adapter 3,
        # whose gradient is ~1e-10 per element behind the heads, is 2.3e-4 off): a layout bug is off by O(1).
        config = load_config(preset, [f"data.shape=[{', '.join(map(str, shape))}]", "model.memory_format=contiguous", "train.device=cpu"])
        exact = _step(config, moving, fixed, torch.float64)[2]
        for name in far:
            own_error = (reference[name].double() - exact[name]).norm()
            assert (grads[name].double() - exact[name]).norm() <= 10 * own_error + 1e-3 * exact[name].norm(), name


def test_the_factory_picks_channels_last_where_it_is_fast():
    assert resolve_memory_format("auto", "cpu", "fp32") == "channels_last"
    assert resolve_memory_format("auto", "cpu", "bf16") == "channels_last"
    assert resolve_memory_format("auto", "cuda", "auto") == "channels_last"  # auto is fp16 AMP on CUDA
    assert resolve_memory_format("auto", "cuda", "fp32") == "contiguous"
    assert resolve_memory_format("contiguous", "cpu", "fp32") == "contiguous"
    with pytest.raises(ValueError, match="model.memory_format"):
        resolve_memory_format("nhwc", "cpu", "fp32")
    with pytest.raises(ValueError, match="model.memory_format must be one of auto, contiguous, channels_last"):
        load_config("cpu-default", ["model.memory_format=nhwc"])
    model = build_model(load_config("cpu-voxelmorph", ["train.device=cpu"]))
    assert memory_format_of(model) == "channels_last"
    loaded = build_model(load_config("cpu-voxelmorph", ["train.device=cpu", "model.memory_format=contiguous"]))
    loaded.load_state_dict(model.state_dict())  # copies into the contiguous tensors: the layout stays
    assert memory_format_of(loaded) == "contiguous" and all(p.is_contiguous() for p in loaded.parameters())


def test_contiguous_weights_keep_channels_last_activations(smooth_pair):
    # DeepSpeed needs contiguous parameters; the network still runs channels-last, with the same result.
    moving, fixed = smooth_pair((32, 32, 32))
    model = build_model(load_config("cpu-voxelmorph", ["train.device=cpu"]))
    expected = model(moving, fixed)["flows"][-1]
    contiguous_weights(model)
    assert all(p.is_contiguous() for p in model.parameters()) and memory_format_of(model) == "channels_last"
    flow = model(moving, fixed)["flows"][-1]
    assert flow.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(flow, expected, rtol=1e-4, atol=1e-6)
