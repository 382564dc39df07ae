"""Loading layers from GGUF files written with gguf.GGUFWriter (float32 and Q8_0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize, quantize

from llamareg.llm import load_llama_layers

HF_TO_GGUF = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (half-split -> interleaved)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf(model, path, matrix_type: GGMLQuantizationType, architecture: str = "llama"):
    config = model.config
    writer = GGUFWriter(str(path), architecture)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_tensor("output_norm.weight", model.model.norm.weight.detach().numpy())
    for index, layer in enumerate(model.model.layers):
        for name, value in layer.state_dict().items():
            array = value.numpy()
            if name == "self_attn.q_proj.weight":
                array = llama_cpp_permute(array, config.num_attention_heads)
            elif name == "self_attn.k_proj.weight":
                array = llama_cpp_permute(array, config.num_key_value_heads)
            gguf_name = f"blk.{index}.{HF_TO_GGUF[name]}"
            if array.ndim == 2 and matrix_type != GGMLQuantizationType.F32:
                writer.add_tensor(gguf_name, quantize(array, matrix_type), raw_dtype=matrix_type)
            else:
                writer.add_tensor(gguf_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("matrix_type", [GGMLQuantizationType.F32, GGMLQuantizationType.Q8_0])
def test_loaded_layers_equal_the_written_tensors(tiny_llama, tmp_path, matrix_type):
    path = write_gguf(tiny_llama, tmp_path / f"tiny-{matrix_type.name}.gguf", matrix_type)
    loaded = load_llama_layers(str(path), [1, 2])
    assert loaded.source == f"gguf:{path}"
    assert (
        loaded.spec.hidden_size,
        loaded.spec.intermediate_size,
        loaded.spec.num_attention_heads,
        loaded.spec.num_key_value_heads,
        loaded.spec.num_hidden_layers,
    ) == (64, 128, 4, 2, 3)
    for layer, index in zip(loaded.layers, (1, 2)):
        for name, value in tiny_llama.model.layers[index].state_dict().items():
            expected = value.numpy()
            if expected.ndim == 2 and matrix_type != GGMLQuantizationType.F32:
                # Quantisation blocks run along rows, so the q/k row permutation commutes with it.
                expected = dequantize(quantize(expected, matrix_type), matrix_type)
            torch.testing.assert_close(layer.state_dict()[name], torch.from_numpy(np.asarray(expected)), rtol=0, atol=0, msg=name)
    torch.testing.assert_close(loaded.final_norm.weight, tiny_llama.model.norm.weight, rtol=0, atol=0)
    if matrix_type == GGMLQuantizationType.Q8_0:
        # The quantised file is close to, but not exactly, the float weights.
        difference = (loaded.layers[0].mlp.up_proj.weight - tiny_llama.model.layers[1].mlp.up_proj.weight).abs()
        assert 0 < difference.max() < 5e-3


def test_other_architecture_is_refused(tiny_llama, tmp_path):
    path = write_gguf(tiny_llama, tmp_path / "qwen.gguf", GGMLQuantizationType.F32, architecture="qwen2")
    with pytest.raises(ValueError, match="general.architecture is 'qwen2'; only 'llama'"):
        load_llama_layers(str(path), [0])


def test_a_non_gguf_file_is_refused(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="is a file but not .gguf"):
        load_llama_layers(str(path), [0])
