"""Loading layers from a Meta checkpoint folder (params.json + consolidated.00.pth)."""

from __future__ import annotations

import json

import pytest
import torch

from llamareg.llm import load_llama_layers

HF_TO_META = {
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def to_meta_rotary_layout(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Hugging Face half-split rows -> Meta's interleaved rows (inverse of convert_llama_weights_to_hf's permute)."""
    rows, columns = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, columns).transpose(1, 2).reshape(rows, columns)


def write_meta_checkpoint(model, folder, params_overrides=None):
    config = model.config
    state = {
        "tok_embeddings.weight": model.model.embed_tokens.weight.detach().clone(),
        "output.weight": model.lm_head.weight.detach().clone(),
        "norm.weight": model.model.norm.weight.detach().clone(),
    }
    for index, layer in enumerate(model.model.layers):
        hf = layer.state_dict()
        hf["self_attn.q_proj.weight"] = to_meta_rotary_layout(hf["self_attn.q_proj.weight"], config.num_attention_heads)
        hf["self_attn.k_proj.weight"] = to_meta_rotary_layout(hf["self_attn.k_proj.weight"], config.num_key_value_heads)
        state.update({f"layers.{index}.{meta}": hf[name].clone() for name, meta in HF_TO_META.items()})
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "consolidated.00.pth")
    params = {
        "dim": config.hidden_size,
        "n_layers": config.num_hidden_layers,
        "n_heads": config.num_attention_heads,
        "n_kv_heads": config.num_key_value_heads,
        "multiple_of": 32,
        "norm_eps": config.rms_norm_eps,
        "vocab_size": config.vocab_size,
        **(params_overrides or {}),
    }
    (folder / "params.json").write_text(json.dumps(params))
    return folder


@pytest.fixture(scope="module")
def meta_folder(tiny_llama, tmp_path_factory):
    return write_meta_checkpoint(tiny_llama, tmp_path_factory.mktemp("meta") / "llama-tiny")


def test_loaded_layers_equal_hugging_face_tensors(tiny_llama, meta_folder):
    loaded = load_llama_layers(str(meta_folder), [-1, 0], dtype=torch.float64)
    assert loaded.layer_indices == (2, 0)
    assert loaded.source == f"meta:{meta_folder}"
    # FFN width comes from w1 (params.json's multiple_of rule would give 192 here).
    assert loaded.spec.intermediate_size == 128 and loaded.spec.num_key_value_heads == 2
    for layer, index in zip(loaded.layers, (2, 0)):
        expected = tiny_llama.model.layers[index].state_dict()
        for name, value in layer.state_dict().items():
            assert value.dtype == torch.float64
            torch.testing.assert_close(value, expected[name].double(), rtol=0, atol=0, msg=name)
    torch.testing.assert_close(loaded.final_norm.weight, tiny_llama.model.norm.weight.double(), rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.layers.parameters())


def test_params_contradicting_the_tensors_names_file_and_tensor(tiny_llama, tmp_path):
    folder = write_meta_checkpoint(tiny_llama, tmp_path / "bad", {"dim": 128})
    with pytest.raises(ValueError) as error:
        load_llama_layers(str(folder), [0])
    message = str(error.value)
    assert "\n" not in message
    assert f"{folder / 'consolidated.00.pth'}: tensor layers.0.attention.wq.weight has shape (64, 64)" in message


def test_several_shards_are_refused(meta_folder, tmp_path):
    folder = tmp_path / "two_shards"
    folder.mkdir()
    for name in ("params.json", "consolidated.00.pth"):
        (folder / name).write_bytes((meta_folder / name).read_bytes())
    (folder / "consolidated.01.pth").write_bytes((meta_folder / "consolidated.00.pth").read_bytes())
    with pytest.raises(ValueError, match="2 consolidated.NN.pth shards; only single-shard"):
        load_llama_layers(str(folder), [0])
