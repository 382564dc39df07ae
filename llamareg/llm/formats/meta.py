"""Meta's original LLaMA checkpoints: ``params.json`` + ``consolidated.00.pth``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llamareg.llm.spec import LlamaSpec, check_tensor_shape, qk_rows_to_half_split

__all__ = ["MetaReader"]

# Hugging Face name -> Meta name inside "layers.{i}.".
META_LAYER_NAMES = {
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


class MetaReader:
    """Reads decoder layers of a single-shard Meta checkpoint through a memory map.

    The checkpoint is opened with ``torch.load(mmap=True)``, so only the pages of the tensors
    that are read come into memory. q/k rows are converted from Meta's interleaved rotary layout
    to Hugging Face's with the permutation of transformers' convert_llama_weights_to_hf.py.

    Args:
        folder: folder with ``params.json`` and ``consolidated.00.pth`` (e.g. LLaMA-2-7B).
    """

    def __init__(self, folder: Path) -> None:
        shards = sorted(folder.glob("consolidated.*.pth"))
        if len(shards) > 1:
            raise ValueError(
                f"{folder}: {len(shards)} consolidated.NN.pth shards; only single-shard Meta "
                f"checkpoints (e.g. LLaMA-2-7B) are supported, convert larger ones to Hugging Face format"
            )
        if not shards:
            raise FileNotFoundError(f"{folder}: no consolidated.00.pth next to params.json")
        self.folder = folder
        self.checkpoint_path = shards[0]
        self.description = f"meta:{folder}"
        self._state = torch.load(self.checkpoint_path, mmap=True, weights_only=True, map_location="cpu")
        self.spec = self._read_spec(folder / "params.json")

    def _read_spec(self, params_path: Path) -> LlamaSpec:
        params = json.loads(params_path.read_text())
        missing = [k for k in ("dim", "n_layers", "n_heads") if k not in params]
        if missing:
            raise ValueError(f"{params_path}: missing {', '.join(missing)}; not a LLaMA params.json")
        # params.json gives the FFN width only as a rounding rule (multiple_of, ffn_dim_multiplier);
        # the stored w1 is the ground truth, and its other dimension is checked against dim later.
        w1_name = "layers.0.feed_forward.w1.weight"
        if w1_name not in self._state:
            raise ValueError(f"{self.checkpoint_path}: tensor {w1_name} not found; not a LLaMA checkpoint")
        try:
            return LlamaSpec(
                hidden_size=params["dim"],
                intermediate_size=int(self._state[w1_name].shape[0]),
                num_attention_heads=params["n_heads"],
                num_key_value_heads=params.get("n_kv_heads") or params["n_heads"],
                rms_norm_eps=float(params.get("norm_eps", 1e-5)),
                num_hidden_layers=params["n_layers"],
            )
        except ValueError as error:
            raise ValueError(f"{params_path}: {error}") from None

    def _take(self, meta_name: str, expected: tuple[int, ...]) -> torch.Tensor:
        if meta_name not in self._state:
            raise ValueError(f"{self.checkpoint_path}: tensor {meta_name} not found; the checkpoint is incomplete")
        tensor = self._state[meta_name]
        check_tensor_shape(tensor.shape, expected, str(self.checkpoint_path), meta_name, self.spec)
        # Copy out of the memory map so the loaded layer does not keep the whole file mapped.
        return tensor.clone()

    def layer_tensors(self, index: int) -> dict[str, torch.Tensor]:
        shapes = self.spec.layer_parameter_shapes()
        tensors = {hf: self._take(f"layers.{index}.{meta}", shapes[hf]) for hf, meta in META_LAYER_NAMES.items()}
        return qk_rows_to_half_split(tensors, self.spec)

    def final_norm_weight(self) -> torch.Tensor:
        return self._take("norm.weight", (self.spec.hidden_size,))
