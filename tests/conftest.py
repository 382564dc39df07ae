"""Shared fixtures: small real models built from SmolLM2-shaped layers."""

import pytest
import torch

from llamareg.config import load_config
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


TINY_RUN = [
    "data.shape=[32, 32, 32]",
    "data.num_train_subjects=4",
    "data.num_val_subjects=3",
    "data.num_val_pairs=2",
    "model.base_channels=4",
    "model.adapter_width=32",
    "model.inner_adapter_width=32",
    "train.val_every=2",
    "train.log_every=1",
    # MLflow costs seconds per run (store creation); tests/tracking turn it on.
    "tracking.enabled=false",
]


@pytest.fixture
def tiny_config(tmp_path):
    """``tiny_config(*overrides, out=None)``: cpu-default shrunk to seconds per run, writing to ``out`` (tmp_path)."""

    def make(*overrides, out=None):
        return load_config("cpu-default", [*TINY_RUN, f"train.out={out or tmp_path}", *overrides])

    return make
