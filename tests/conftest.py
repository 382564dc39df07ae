"""Shared fixtures: small real models built from SmolLM2-shaped layers."""

import pytest
import torch

from llamareg.llm import load_llama_layers
from llamareg.networks.frozen_llm import FrozenLLM
from llamareg.networks.llamareg import LLaMAReg


@pytest.fixture(scope="session")
def smollm_random_layers():
    """The last SmolLM2-135M layer with random weights (fast; the pretrained one is tested in tests/llm)."""
    return load_llama_layers("random:smollm2-135m", [-1], seed=0)


@pytest.fixture
def small_model(smollm_random_layers):
    """A C=4 LLaMA-Reg on 32^3 volumes around a copy of the frozen layer."""
    torch.manual_seed(0)
    loaded = smollm_random_layers
    layers = torch.nn.ModuleList(type(layer)(loaded.spec) for layer in loaded.layers)
    layers.load_state_dict(loaded.layers.state_dict())
    llm = FrozenLLM(layers, loaded.final_norm, calls=2, source=loaded.source, fingerprint=loaded.fingerprint)
    return LLaMAReg(llm, shape=(32, 32, 32), base_channels=4, adapter_width=32, inner_adapter_width=32)
