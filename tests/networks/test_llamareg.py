"""The LLaMA-Reg network: shapes for several inputs, gradient flow, frozen layers, field options."""

import pytest
import torch

from llamareg.networks.adapters import tokens_to_volume
from llamareg.networks.flow_fields import FlowFieldRules
from llamareg.networks.frozen_llm import FrozenLLM
from llamareg.networks.llamareg import LLaMAReg
from llamareg.training.objective import MultiScaleObjective


@pytest.mark.parametrize("shape", [(32, 32, 32), (48, 64, 32), (64, 80, 64)])
def test_output_shapes_follow_the_input(small_model, shape):
    moving, fixed = torch.rand(1, 1, *shape), torch.rand(1, 1, *shape)
    with torch.no_grad():
        out = small_model(moving, fixed)
    full = torch.tensor(shape)
    assert [tuple(f.shape) for f in out["flows"]] == [(1, 3, *(full // s).tolist()) for s in (4, 2, 1)]
    assert out["warped"].shape == moving.shape


def test_token_count_follows_the_input_shape(small_model):
    seen = []
    hook = small_model.steps[0].pathway.input_adapter.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        small_model(torch.rand(2, 1, 48, 64, 32), torch.rand(2, 1, 48, 64, 32))
    hook.remove()
    assert seen == [torch.Size([2, 3 * 4 * 2, 576])]


def test_initial_flow_is_near_identity(small_model):
    with torch.no_grad():
        out = small_model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
    assert out["flows"][-1].abs().max() < 1e-2


def test_rejects_bad_shapes(small_model):
    with pytest.raises(ValueError, match="divisible by 16"):
        small_model(torch.rand(1, 1, 32, 32, 40), torch.rand(1, 1, 32, 32, 40))
    with pytest.raises(ValueError, match="one shape"):
        small_model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 48))


def test_gradients_reach_trainable_parts_and_never_the_frozen_layers(small_model):
    frozen_before = {k: v.clone() for k, v in small_model.llm.state_dict().items()}
    optimizer = torch.optim.Adam(small_model.trainable_parameters(), lr=1e-3)
    objective = MultiScaleObjective("mse", 0.04)
    generator = torch.Generator().manual_seed(0)
    moving, fixed = torch.rand(1, 1, 32, 32, 32, generator=generator), torch.rand(1, 1, 32, 32, 32, generator=generator)
    for _ in range(3):
        optimizer.zero_grad()
        loss, _ = objective(moving, fixed, small_model(moving, fixed)["flows"])
        loss.backward()
        for name, parameter in small_model.named_parameters():
            if name.startswith("llm."):
                assert not parameter.requires_grad and parameter.grad is None, name
        # Adapter0 sits before the frozen layers: a gradient there proves it flows through them.
        for name in (
            "steps.0.pathway.input_adapter.0.weight",
            "steps.0.pathway.inner_adapters.0.0.weight",
            "encoder.moving.full.0.weight",
            "steps.0.pathway.positional.weight",
            "steps.0.decoder.heads.2.2.weight",
        ):
            grad = dict(small_model.named_parameters())[name].grad
            assert grad is not None and grad.abs().sum() > 0, name
        optimizer.step()
    assert all(torch.equal(frozen_before[k], v) for k, v in small_model.llm.state_dict().items())
    assert all(id(p) not in {id(q) for q in small_model.llm.parameters()} for g in optimizer.param_groups for p in g["params"])


def test_parameter_counts_split_trainable_and_frozen(small_model):
    counts = small_model.parameter_counts()
    layer = small_model.llm.layers[0]
    assert counts["frozen"] == sum(p.numel() for p in layer.parameters()) + 576  # layer + final norm
    assert counts["trainable"] == sum(p.numel() for p in small_model.trainable_parameters())


def test_tokens_to_volume_matches_the_release_rearrangement():
    # B (D H W) (c d h w) -> B c (D d) (H h) (W w), written out by index for a 2x1x1 grid, patch 2, c=1.
    tokens = torch.arange(2 * 8, dtype=torch.float32).reshape(1, 2, 8)
    volume = tokens_to_volume(tokens, grid=(2, 1, 1), patch=2)
    assert volume.shape == (1, 1, 4, 2, 2)
    for D in range(2):
        for d in range(2):
            for h in range(2):
                for w in range(2):
                    assert volume[0, 0, D * 2 + d, h, w] == tokens[0, D, d * 4 + h * 2 + w]


@pytest.mark.parametrize("rules", [FlowFieldRules("add", rescale_upsampled=False), FlowFieldRules(diffeomorphic=True)])
def test_field_options_build_and_run(smollm_random_layers, rules):
    llm = FrozenLLM(smollm_random_layers.layers, smollm_random_layers.final_norm, calls=1)
    model = LLaMAReg(llm, shape=(32, 32, 32), base_channels=4, adapter_width=16, inner_adapter_width=16, rules=rules)
    assert len(model.steps[0].pathway.inner_adapters) == 0
    out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
    assert out["flows"][-1].shape == (1, 3, 32, 32, 32)


def test_compose_rule_differs_from_add_for_non_constant_fields():
    coarse = torch.zeros(1, 3, 8, 8, 8)
    coarse[:, 2] = torch.linspace(0, 2, 8)  # displacement varying along W
    residual = torch.zeros(1, 3, 8, 8, 8)
    residual[:, 2] = 1.0
    composed = FlowFieldRules("compose").combine(coarse, residual)
    added = FlowFieldRules("add").combine(coarse, residual)
    # Composition samples the coarse field one voxel further along W: inner + coarse(x + 1).
    assert torch.allclose(composed[0, 2, 4, 4, 3], residual[0, 2, 4, 4, 3] + coarse[0, 2, 4, 4, 4])
    assert not torch.allclose(composed, added)
