"""GGUF files written by llama.cpp (architecture ``llama``), quantised or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize

from llamareg.llm.spec import LlamaSpec, check_tensor_shape, qk_rows_to_half_split

__all__ = ["GGUFLlamaReader"]

# Hugging Face name -> llama.cpp name inside "blk.{i}.".
GGUF_LAYER_NAMES = {
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


class GGUFLlamaReader:
    """Reads decoder layers of a llama-architecture GGUF file through ``GGUFReader``'s memory map.

    Only the requested tensors are de-quantised (to float32, with ``gguf.quants.dequantize``).
    llama.cpp stores q/k rows in the interleaved rotary layout; they are put back in Hugging Face's
    layout as transformers' GGUF loader does.

    Args:
        path: the ``.gguf`` file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"gguf:{path}"
        try:
            self._reader = GGUFReader(path, "r")
        except (ValueError, OSError) as error:  # gguf says only "GGUF magic invalid", without the file
            raise ValueError(f"{path}: not a readable GGUF file ({error}); give a llama.cpp .gguf file") from None
        self._tensors = {tensor.name: tensor for tensor in self._reader.tensors}
        self.spec = self._read_spec()

    def _field(self, key: str, default: object = None) -> object:
        field = self._reader.get_field(key)
        if field is None:
            if default is None:
                raise ValueError(f"{self.path}: metadata {key} missing; not a llama GGUF file")
            return default
        return field.contents()

    def _read_spec(self) -> LlamaSpec:
        architecture = self._field("general.architecture")
        if architecture != "llama":
            raise ValueError(f"{self.path}: general.architecture is {architecture!r}; only 'llama' is supported")
        heads = int(self._field("llama.attention.head_count"))
        try:
            spec = LlamaSpec(
                hidden_size=int(self._field("llama.embedding_length")),
                intermediate_size=int(self._field("llama.feed_forward_length")),
                num_attention_heads=heads,
                num_key_value_heads=int(self._field("llama.attention.head_count_kv", heads)),
                rms_norm_eps=float(self._field("llama.attention.layer_norm_rms_epsilon")),
                num_hidden_layers=int(self._field("llama.block_count")),
            )
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None
        key_length = self._field("llama.attention.key_length", spec.head_dim)
        if key_length != spec.head_dim:
            raise ValueError(
                f"{self.path}: llama.attention.key_length {key_length} differs from "
                f"embedding_length / head_count = {spec.head_dim}; such models are not supported"
            )
        return spec

    def _take(self, name: str, expected: tuple[int, ...]) -> torch.Tensor:
        tensor = self._tensors.get(name)
        if tensor is None:
            raise ValueError(f"{self.path}: tensor {name} not found; the file is incomplete or not a llama model")
        # GGUF lists dimensions fastest-varying first; PyTorch (out, in) is the reverse.
        check_tensor_shape(tuple(int(n) for n in reversed(tensor.shape)), expected, str(self.path), name, self.spec)
        values = dequantize(tensor.data, tensor.tensor_type)
        # np.array copies out of the read-only memory map (a float32 tensor is dequantised to a view of it).
        return torch.from_numpy(np.array(values, dtype=np.float32).reshape(expected))

    def layer_tensors(self, index: int) -> dict[str, torch.Tensor]:
        shapes = self.spec.layer_parameter_shapes()
        tensors = {hf: self._take(f"blk.{index}.{gguf}", shapes[hf]) for hf, gguf in GGUF_LAYER_NAMES.items()}
        return qk_rows_to_half_split(tensors, self.spec)

    def final_norm_weight(self) -> torch.Tensor:
        return self._take("output_norm.weight", (self.spec.hidden_size,))
