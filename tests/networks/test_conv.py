"""The oneDNN-friendly convolution: same values and gradients as ``F.conv3d``, and no convolution of a
model's training step left on PyTorch's reference kernel."""

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from llamareg.config import load_config
from llamareg.networks import conv as conv_module
from llamareg.networks.conv import ConvTranspose3d, conv3d, takes_reference_kernel
from llamareg.models import build_model
from llamareg.training.objective import MultiScaleObjective


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("in_channels, stride, bias", [(8, 1, True), (5, 2, True), (1, 1, False), (16, 2, False)])
def test_values_and_gradients_match_conv3d(in_channels, stride, bias, memory_format):
    # 6 output channels: fewer inputs (1, 5) take the doubled-input form, more (8, 16) the split-input one.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, in_channels, 12, 10, 8, generator=generator).contiguous(memory_format=memory_format).requires_grad_()
    weight = torch.randn(6, in_channels, 3, 3, 3, generator=generator).contiguous(memory_format=memory_format).requires_grad_()
    b = torch.randn(6, generator=generator, requires_grad=True) if bias else None
    assert takes_reference_kernel(x, weight, groups=1)
    results = []
    for function in (F.conv3d, conv3d):
        out = function(x, weight, b, stride, 1)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), [x, weight] + ([b] if bias else []))
        results.append((out, grads))
    (reference, reference_grads), (fast, fast_grads) = results
    if memory_format == torch.channels_last_3d and in_channels > 1:
        assert fast.is_contiguous(memory_format=memory_format)
    # Float rounding of sums in another order: differences far below the values' scale (1e-5 of it).
    for value, value_ref in zip((fast, *fast_grads), (reference, *reference_grads)):
        torch.testing.assert_close(value, value_ref, rtol=0, atol=1e-5 * value_ref.abs().max().item())


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("bias", [True, False])
def test_transposed_convolution_matches_pytorch_off_its_reference_kernel(memory_format, bias):
    torch.manual_seed(0)
    ours = ConvTranspose3d(6, 4, kernel_size=2, stride=2, bias=bias).to(memory_format=memory_format)
    theirs = torch.nn.ConvTranspose3d(6, 4, kernel_size=2, stride=2, bias=bias).to(memory_format=memory_format)
    theirs.load_state_dict(ours.state_dict())  # same parameters and state dict
    x = torch.randn(1, 6, 5, 6, 7).contiguous(memory_format=memory_format)
    results = []
    for module in (ours, theirs):
        inputs = x.clone().requires_grad_()
        with profile() as profiler:
            out = module(inputs)
            weights = torch.linspace(-1, 1, out.numel()).view_as(out)
            grads = torch.autograd.grad((out * weights).sum(), [inputs, *module.parameters()])
        results.append((out, grads, {event.key for event in profiler.key_averages()}))
    (out, grads, kernels), (reference, reference_grads, reference_kernels) = results
    assert "aten::slow_conv_transpose3d" in reference_kernels and "aten::slow_conv_transpose3d" not in kernels
    assert out.shape == (1, 4, 10, 12, 14) and out.is_contiguous(memory_format=memory_format)
    for value, value_ref in zip((out, *grads), (reference, *reference_grads)):
        torch.testing.assert_close(value, value_ref, rtol=0, atol=1e-5 * value_ref.abs().max().item())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours(x).dtype == torch.bfloat16


def test_only_what_pytorch_sends_to_its_reference_kernel_is_rewritten():
    weight = torch.zeros(8, 8, 3, 3, 3)
    assert takes_reference_kernel(torch.zeros(1, 8, 32, 32, 32), weight, 1)
    assert not takes_reference_kernel(torch.zeros(2, 8, 32, 32, 32), weight, 1)  # batch > 1: oneDNN already
    assert not takes_reference_kernel(torch.zeros(1, 8, 64, 64, 64), weight, 1)  # large: oneDNN already
    assert not takes_reference_kernel(torch.zeros(1, 8, 32, 32, 32, dtype=torch.float64), weight.double(), 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not takes_reference_kernel(torch.zeros(1, 8, 32, 32, 32), weight, 1)


def _step(model, objective, moving, fixed):
    model.zero_grad(set_to_none=True)
    loss = objective(moving, fixed, model(moving, fixed)["flows"])[0]
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "preset, shape",
    [
        ("cpu-default", (32, 32, 32)),
        ("cpu-voxelmorph", (32, 32, 32)),
        ("cpu-lapirn", (32, 32, 32)),
        ("cpu-transmorph", (32, 32, 32)),  # 32^3: see test_memory_format on LeakyReLU kinks at 64^3
    ],
)
def test_a_training_step_keeps_its_loss_and_gradients_and_leaves_no_convolution_on_the_reference_kernel(
    monkeypatch, preset, shape, smooth_pair
):
    config = load_config(preset, [f"data.shape=[{', '.join(map(str, shape))}]"])
    torch.manual_seed(0)
    model = build_model(config)
    objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, config.train.scale_weights)
    moving, fixed = smooth_pair(shape)
    with profile() as profiler:
        loss, grads = _step(model, objective, moving, fixed)
    kernels = {event.key for event in profiler.key_averages()}
    assert "aten::slow_conv3d_forward" not in kernels and "aten::mkldnn_convolution" in kernels
    assert "aten::slow_conv_transpose3d" not in kernels
    monkeypatch.setattr(conv_module, "takes_reference_kernel", lambda *args: False)  # plain F.conv3d everywhere
    reference_loss, reference_grads = _step(model, objective, moving, fixed)
    assert loss == pytest.approx(reference_loss, rel=1e-5)
    assert grads.keys() == reference_grads.keys()
    # Float rounding differs with the order of the sums; float64 says which error is whose. The rewritten
    # convolution's gradient is as close to the exact one as the plain one's (or within 1e-3 of its size: the
    # gradients behind the flow heads' 1e-5 initialisation are ~1e-10 per element, where float32 sums in
    # another order differ by a few 1e-4 of the norm; with cpu-default's initialisation an output adapter's hit 2.3e-4).
    exact_loss, exact = _step(model.double(), objective, moving.double(), fixed.double())
    for name, g_exact in exact.items():
        error, reference_error = (grads[name].double() - g_exact).norm(), (reference_grads[name].double() - g_exact).norm()
        assert error <= max(2 * reference_error, 1e-3 * g_exact.norm()) + 1e-12, name
