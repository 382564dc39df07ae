"""Precision: what ``auto`` resolves to, and that bf16 autocast computes the training step as fp32 does."""

import pytest
import torch

from llamareg.config import load_config
from llamareg.models import build_model
from llamareg.training import precision as precision_module
from llamareg.training.objective import MultiScaleObjective
from llamareg.training.precision import Precision


@pytest.mark.parametrize("units, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_is_bf16_on_cpus_with_bf16_units_and_fp16_on_cuda(monkeypatch, units, expected):
    monkeypatch.setattr(precision_module, "cpu_has_bf16_units", lambda: units)
    assert Precision.resolve("auto", torch.device("cpu")).name == expected
    assert Precision.resolve("auto", torch.device("cuda")).name == "fp16"
    assert Precision.resolve("fp32", torch.device("cpu")).name == "fp32"
    with pytest.raises(ValueError, match="train.precision"):
        Precision.resolve("int8", torch.device("cpu"))


def test_bf16_autocast_gives_the_fp32_loss_and_gradients_of_a_cpu_default_step():
    config = load_config("cpu-default")
    torch.manual_seed(0)
    model = build_model(config)
    objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, flow_weight=config.train.flow_weight)
    generator = torch.Generator().manual_seed(1)
    moving, fixed = torch.rand(1, 1, 32, 32, 32, generator=generator), torch.rand(1, 1, 32, 32, 32, generator=generator)
    true_flow = 2 * torch.randn(1, 3, 32, 32, 32, generator=generator)

    def step(name: str) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        with Precision(name, "cpu").autocast():
            flows = model(moving, fixed)["flows"]
        loss, _ = objective(moving, fixed, flows, true_flow=true_flow)
        loss.backward()
        gradient = torch.cat([p.grad.flatten() for p in model.trainable_parameters() if p.grad is not None])
        return loss.item(), gradient

    loss32, gradient32 = step("fp32")
    loss16, gradient16 = step("bf16")
    assert loss16 == pytest.approx(loss32, rel=1e-3)
    # The gradient points the same way and has the same size, to bf16's 8 bits of mantissa.
    assert torch.nn.functional.cosine_similarity(gradient16, gradient32, dim=0) > 0.99
    assert gradient16.norm() == pytest.approx(gradient32.norm().item(), rel=0.05)
