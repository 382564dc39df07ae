"""LoRA on the pretrained LLM layers via peft: the ablation that fine-tunes instead of freezing."""

from __future__ import annotations

from typing import Sequence

from llamareg.networks.frozen_llm import FrozenLLM

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(llm: FrozenLLM, rank: int, alpha: float, dropout: float, targets: Sequence[str]) -> FrozenLLM:
    """Wrap the named linear layers of every LLM layer with trainable LoRA factors.

    The pretrained weights stay frozen; only the LoRA matrices train (lora_B starts at zero, so the
    block's output is the pretrained one until training moves it).

    Example:
        >>> from llamareg.llm import load_llama_layers
        >>> loaded = load_llama_layers("random:smollm2-135m", [-1])
        >>> llm = add_lora(FrozenLLM(loaded.layers, loaded.final_norm, 2), 4, 8.0, 0.0, ["q_proj", "v_proj"])
        >>> sorted({n.split(".")[-3] for n, p in llm.named_parameters() if p.requires_grad})
        ['lora_A', 'lora_B']
    """
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown or not targets:
        raise ValueError(f"llm.lora_targets must name some of {list(LORA_TARGETS)}, got {list(targets)}")
    if rank < 1:
        raise ValueError(f"llm.lora_rank must be >= 1 to add LoRA, got {rank}")
    from peft import LoraConfig, inject_adapter_in_model  # 4 s of imports (transformers, mlflow): only for LoRA runs

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    inject_adapter_in_model(config, llm.layers)
    # LoRA factors follow the frozen weights' dtype and device.
    reference = next(iter(llm.layers.parameters()))
    for name, parameter in llm.layers.named_parameters():
        if "lora_" in name:
            parameter.data = parameter.data.to(reference.dtype)
    return llm
