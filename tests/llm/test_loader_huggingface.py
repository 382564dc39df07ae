"""Loading layers from Hugging Face folders (single and sharded safetensors), and the loader's errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from llamareg.llm import load_llama_layers

LAYER_NAMES = [
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
]


@pytest.fixture(scope="module")
def hf_folders(tiny_llama, tmp_path_factory):
    """The tiny model saved once as one safetensors file and once in several shards."""
    single = tmp_path_factory.mktemp("hf_single")
    sharded = tmp_path_factory.mktemp("hf_sharded")
    tiny_llama.save_pretrained(single)
    tiny_llama.save_pretrained(sharded, max_shard_size="40KB")
    assert (single / "model.safetensors").is_file()
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("*.safetensors"))) > 2
    return {"single": single, "sharded": sharded}


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_loaded_layers_equal_the_saved_tensors(tiny_llama, hf_folders, layout):
    loaded = load_llama_layers(str(hf_folders[layout]), [2, 0])
    assert loaded.layer_indices == (2, 0)
    assert loaded.source == f"huggingface:{hf_folders[layout]}"
    assert loaded.spec.num_key_value_heads == 2 and loaded.spec.head_dim == 16
    for layer, index in zip(loaded.layers, (2, 0)):
        expected = tiny_llama.model.layers[index].state_dict()
        got = layer.state_dict()
        assert sorted(got) == sorted(LAYER_NAMES)
        for name in LAYER_NAMES:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    torch.testing.assert_close(loaded.final_norm.weight, tiny_llama.model.norm.weight, rtol=0, atol=0)


def test_single_and_sharded_give_the_same_fingerprint(hf_folders):
    single = load_llama_layers(str(hf_folders["single"]), [1])
    assert single.fingerprint == load_llama_layers(str(hf_folders["sharded"]), [1]).fingerprint
    assert single.fingerprint != load_llama_layers(str(hf_folders["single"]), [2]).fingerprint
    assert len(single.fingerprint) == 16


def test_layers_are_frozen_in_the_requested_dtype(hf_folders, tiny_llama):
    loaded = load_llama_layers(str(hf_folders["single"]), [-1], dtype=torch.bfloat16)
    assert loaded.layer_indices == (2,)
    parameters = list(loaded.layers.parameters()) + list(loaded.final_norm.parameters())
    assert len(parameters) == 10
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in parameters)
    expected = tiny_llama.model.layers[2].mlp.down_proj.weight.to(torch.bfloat16)
    torch.testing.assert_close(loaded.layers[0].mlp.down_proj.weight, expected, rtol=0, atol=0)
    # The fingerprint identifies the stored weights, not the dtype they were loaded in.
    assert loaded.fingerprint == load_llama_layers(str(hf_folders["single"]), [2]).fingerprint


def test_loaded_layer_forward_equals_transformers(hf_folders, tiny_llama, hf_forward):
    loaded = load_llama_layers(str(hf_folders["sharded"]), [1])
    x = torch.randn(1, 9, 64)
    with torch.no_grad():
        ours = loaded.layers[0](x)
    torch.testing.assert_close(ours, hf_forward(tiny_llama.model.layers[1], x), rtol=1e-5, atol=1e-5)


def test_missing_path_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist does not exist"):
        load_llama_layers(str(tmp_path / "does-not-exist"), [0])


@pytest.mark.parametrize("indices", [[3], [-4]])
def test_layer_index_out_of_range(hf_folders, indices):
    with pytest.raises(ValueError, match=f"layer index {indices[0]} is out of range .* 3 layers"):
        load_llama_layers(str(hf_folders["single"]), indices)


@pytest.mark.parametrize("indices", [[1, 1], [2, -1]])
def test_duplicate_layer_indices(hf_folders, indices):
    with pytest.raises(ValueError, match="same layer twice"):
        load_llama_layers(str(hf_folders["single"]), indices)


def test_expected_hidden_size_contradicting_the_source(hf_folders):
    with pytest.raises(ValueError, match="has hidden size 64, but 4096 was expected"):
        load_llama_layers(str(hf_folders["single"]), [0], expected_hidden_size=4096)


def test_config_contradicting_the_tensors_names_file_and_tensor(hf_folders, tmp_path):
    folder = tmp_path / "bad_config"
    shutil.copytree(hf_folders["single"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 128  # still divisible by the 4 heads: only the tensors can tell
    config.pop("head_dim", None)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        load_llama_layers(str(folder), [1])
    message = str(error.value)
    assert "\n" not in message
    assert str(folder / "model.safetensors") in message
    assert "model.layers.1.self_attn." in message and "config and weights disagree" in message


def test_folder_without_safetensors_is_a_clear_error(hf_folders, tmp_path):
    folder = tmp_path / "bin_only"
    folder.mkdir()
    shutil.copy(hf_folders["single"] / "config.json", folder / "config.json")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors file"):
        load_llama_layers(str(folder), [0])


def test_non_float_dtype_is_rejected(hf_folders):
    with pytest.raises(ValueError, match="dtype must be a floating"):
        load_llama_layers(str(hf_folders["single"]), [0], dtype=torch.int8)
