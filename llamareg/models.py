"""The model factory: the network a config describes, LLaMA-Reg or a baseline.

It sits above :mod:`llamareg.networks` and :mod:`llamareg.baselines` (whose models take plain
arguments) and reads the config, so that neither package imports the other or the config's
architecture choices (voxelmorph's rule: the entry point chooses the network).
"""

from __future__ import annotations

import torch
from torch import nn

from llamareg.config import Config
from llamareg.llm import load_llama_layers
from llamareg.llm.loader import inspect_llm
from llamareg.networks.flow_fields import FlowFieldRules
from llamareg.networks.frozen_llm import FrozenLLM
from llamareg.networks.llamareg import LLaMAReg
from llamareg.networks.lora import add_lora
from llamareg.networks.memory_format import resolve_memory_format, set_memory_format
from llamareg.networks.phases import DeclaredPhase
from llamareg.networks.vit_block import ViTBlocks

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_llm_source(config: Config) -> None:
    """Fail fast, before any output is written, when the configured LLM cannot be opened or does not fit
    (LLaMA-Reg with the LLM token block only: baselines and the ViT ablation load no LLM). Reads headers
    and configs, not weights."""
    if config.model.architecture != "llamareg" or config.model.token_block != "llm":
        return
    if not config.llm.source:
        raise ValueError(f"preset '{config.name}' needs an LLM: pass --llm PATH (HF folder, Meta folder, .gguf) or --llm random:llama-2-7b")
    inspect_llm(config.llm.source, config.llm.layers, config.llm.hidden_size, config.train.seed)


def build_token_block(config: Config) -> nn.Module:
    """The block between Adapter0 and the output adapters: the pretrained LLM layers (frozen, with LoRA
    when ``llm.lora_rank`` > 0, or trained when ``llm.trainable``), or trainable ViT blocks for the ablation."""
    if config.model.token_block == "vit":
        return ViTBlocks(config.model.vit_width, config.model.vit_heads, config.model.vit_depth)
    check_llm_source(config)
    loaded = load_llama_layers(
        config.llm.source,
        config.llm.layers,
        dtype=TORCH_DTYPES[config.llm.dtype],
        expected_hidden_size=config.llm.hidden_size,
        seed=config.train.seed,
    )
    llm = FrozenLLM(
        loaded.layers,
        loaded.final_norm if config.llm.final_norm else None,
        config.llm.calls,
        source=loaded.source,
        fingerprint=loaded.fingerprint,
        layer_indices=loaded.layer_indices,
        trainable=config.llm.trainable,
    )
    if config.llm.lora_rank:
        add_lora(llm, config.llm.lora_rank, config.llm.lora_alpha, config.llm.lora_dropout, config.llm.lora_targets)
    return llm


def build_model(config: Config) -> nn.Module:
    """Build the model a config describes: LLaMA-Reg, loading the configured LLM layers, or the baseline
    ``model.architecture`` names, built for ``data.shape`` with ``model.sizes`` over its published
    configuration (:func:`llamareg.baselines.build_baseline`); its convolutions in the memory format
    ``model.memory_format`` resolves to for ``train.device`` and ``train.precision``."""
    cuda = config.train.device == "cuda" or (config.train.device == "auto" and torch.cuda.is_available())
    memory_format = resolve_memory_format(config.model.memory_format, "cuda" if cuda else "cpu", config.train.precision)
    return set_memory_format(_build_network(config), memory_format)


def declared_phases(config: Config) -> list[DeclaredPhase]:
    """The training phases ``model.architecture`` declares for itself (``train.schedule=lapirn``: LapIRN's
    level-by-level recipe)."""
    from llamareg.baselines import BASELINES

    network = BASELINES.get(config.model.architecture)
    if not hasattr(network, "training_phases"):
        raise ValueError(f"train.schedule={config.train.schedule}: {config.model.architecture} declares no training phases of its own")
    return network.training_phases()


def _build_network(config: Config) -> nn.Module:
    if config.model.architecture != "llamareg":
        from llamareg.baselines import build_baseline

        return build_baseline(config.model.architecture, tuple(config.data.shape), **config.model.sizes)
    return LLaMAReg(
        build_token_block(config),
        shape=tuple(config.data.shape),
        base_channels=config.model.base_channels,
        adapter_width=config.model.adapter_width,
        inner_adapter_width=config.model.inner_adapter_width,
        positional_embedding=config.model.positional_embedding,
        shared_encoder=config.model.shared_encoder,
        rules=FlowFieldRules(
            config.model.flow_combination,
            config.model.rescale_upsampled_flows,
            config.model.diffeomorphic,
            config.model.integration_steps,
        ),
        steps=config.model.steps,
    )
