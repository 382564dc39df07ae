"""Frozen pretrained LLaMA decoder layers and the loader that reads them from HF, Meta or GGUF checkpoints."""

from __future__ import annotations

from llamareg.llm.smollm2 import embedded_llm_path
from llamareg.llm.layers import LlamaDecoderLayer, RMSNorm
from llamareg.llm.loader import LoadedLlama, load_llama_layers
from llamareg.llm.spec import LlamaSpec

__all__ = ["LlamaSpec", "LlamaDecoderLayer", "RMSNorm", "LoadedLlama", "load_llama_layers", "embedded_llm_path"]
