"""Hugging Face checkpoint folders: config.json plus one or several safetensors files."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from llamareg.llm.spec import LlamaSpec, check_tensor_shape

__all__ = ["HuggingFaceReader", "spec_from_hf_config"]

SHARD_INDEX_NAME = "model.safetensors.index.json"


def spec_from_hf_config(config_path: Path) -> LlamaSpec:
    """Read a LlamaSpec from a Hugging Face ``config.json``."""
    config = json.loads(config_path.read_text())
    model_type = config.get("model_type", "llama")
    if model_type != "llama":
        raise ValueError(
            f"{config_path}: model_type is {model_type!r}; only LLaMA-architecture checkpoints (model_type 'llama') "
            "are supported, e.g. meta-llama/Llama-2-7b-hf"
        )
    missing = [k for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers") if k not in config]
    if missing:
        raise ValueError(f"{config_path}: missing {', '.join(missing)}; not a LLaMA-style config")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ValueError(f"{config_path}: attention_bias/mlp_bias are set; only bias-free LLaMA layers are supported")
    try:
        spec = LlamaSpec(
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_attention_heads=config["num_attention_heads"],
            num_key_value_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),  # transformers' LlamaConfig default
            num_hidden_layers=config["num_hidden_layers"],
        )
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from None
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim != spec.head_dim:
        raise ValueError(
            f"{config_path}: head_dim {head_dim} differs from hidden_size / num_attention_heads = "
            f"{spec.head_dim}; such models are not supported"
        )
    return spec


def _weight_map(folder: Path) -> dict[str, Path]:
    """Map every tensor name to the safetensors file holding it, reading headers only."""
    index_path = folder / SHARD_INDEX_NAME
    if index_path.is_file():
        weight_map = json.loads(index_path.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index_path}: no 'weight_map'; the shard index is damaged")
        return {name: folder / file for name, file in weight_map.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(
            f"{folder}: no *.safetensors file (pytorch_model.bin is not read); "
            f"re-save the model with save_pretrained(..., safe_serialization=True)"
        )
    weight_map = {}
    for file in files:
        with safe_open(file, framework="pt") as handle:
            weight_map.update({name: file for name in handle.keys()})
    return weight_map


class HuggingFaceReader:
    """Reads decoder layers of a Hugging Face LLaMA folder by key, opening only the shards that hold them.

    Args:
        folder: folder with ``config.json`` and ``model.safetensors`` or sharded
            ``model-0000x-of-0000n.safetensors`` + ``model.safetensors.index.json``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"huggingface:{folder}"
        self.spec = spec_from_hf_config(folder / "config.json")
        self._files = _weight_map(folder)
        # LlamaForCausalLM prefixes its keys with "model."; a bare LlamaModel does not.
        self._prefix = "model." if "model.norm.weight" in self._files else ""
        if f"{self._prefix}norm.weight" not in self._files:
            raise ValueError(f"{folder}: no model.norm.weight or norm.weight tensor; not a LLaMA checkpoint")

    def _read(self, names: dict[str, str], expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        """Read ``names`` (our name -> stored key), grouped by shard, checking shapes before reading data."""
        missing = [key for key in names.values() if key not in self._files]
        if missing:
            raise ValueError(f"{self.folder}: tensor {missing[0]} not found; the checkpoint is incomplete or not a LLaMA model")
        by_file: dict[Path, list[str]] = {}
        for ours, key in names.items():
            by_file.setdefault(self._files[key], []).append(ours)
        tensors = {}
        for file, ours_in_file in by_file.items():
            if not file.is_file():
                raise FileNotFoundError(f"{file}: shard listed in {SHARD_INDEX_NAME} is missing")
            with safe_open(file, framework="pt") as handle:
                for ours in ours_in_file:
                    key = names[ours]
                    check_tensor_shape(handle.get_slice(key).get_shape(), expected[ours], str(file), key, self.spec)
                    tensors[ours] = handle.get_tensor(key)
        return tensors

    def layer_tensors(self, index: int) -> dict[str, torch.Tensor]:
        shapes = self.spec.layer_parameter_shapes()
        prefix = f"{self._prefix}layers.{index}."
        if f"{prefix}self_attn.q_proj.bias" in self._files:
            raise ValueError(f"{self.folder}: layer {index} has attention biases; only LLaMA layers are supported")
        return self._read({name: prefix + name for name in shapes}, shapes)

    def final_norm_weight(self) -> torch.Tensor:
        name = "norm.weight"
        return self._read({name: self._prefix + name}, {name: (self.spec.hidden_size,)})[name]
