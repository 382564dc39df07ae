"""The pretrained LLaMA layers, frozen (or trainable for the ablation), shared by every cascade step."""

from __future__ import annotations

import torch
from torch import nn


class FrozenLLM(nn.Module):
    """Frozen decoder layers called ``calls`` times, each call followed by the model's final RMSNorm.

    With ``trainable=True`` (``llm.trainable``, the paper's random-and-trained ablation) the same layers
    are parameters of the optimizer and are saved with the checkpoint.

    Call ``i`` runs ``layers[i % len(layers)]``: one layer and two calls is the paper's block (layer 31
    of LLaMA-2-7B twice). The residual stream runs in fp32 and only attention and MLP in the layers'
    dtype (e.g. fp16 weights on a GPU), so that unbounded adapter outputs cannot overflow fp16; the
    result goes back to the input's dtype.

    Args:
        layers: Pretrained decoder layers (see :func:`llamareg.llm.load_llama_layers`).
        final_norm: The model's final RMSNorm, or None to skip it.
        calls: Number of calls.
        source: Where the layers came from (recorded in checkpoints).
        fingerprint: Hash of the loaded tensors, so a checkpoint can check it is reused with the same LLM.
        layer_indices: The layers' indices in the source model (recorded with the run).
        trainable: Train the layers' weights instead of freezing them.
    """

    def __init__(
        self,
        layers: nn.ModuleList,
        final_norm: nn.Module | None,
        calls: int,
        source: str = "unknown",
        fingerprint: str = "",
        layer_indices: tuple[int, ...] = (),
        trainable: bool = False,
    ) -> None:
        super().__init__()
        if calls < 1 or len(layers) == 0:
            raise ValueError(f"FrozenLLM needs at least one layer and one call, got {len(layers)} layers, {calls} calls")
        self.layers = layers
        self.final_norm = final_norm
        self.calls = calls
        self.source = source
        self.fingerprint = fingerprint
        self.layer_indices = tuple(layer_indices)
        self.trainable = trainable
        self.requires_grad_(trainable)
        self.eval()

    @property
    def hidden_size(self) -> int:
        return self.layers[0].input_layernorm.weight.shape[0]

    def frozen_weight_names(self) -> list[str]:
        """The loaded weights that never train and are reloaded from their source: all of them (LoRA
        factors added later are not among them), or none when the layers are trainable."""
        if self.trainable:
            return []
        return [name for name, _ in self.named_parameters() if "lora_" not in name]

    def train(self, mode: bool = True) -> "FrozenLLM":
        """The pretrained layers stay in inference behaviour whatever the surrounding model does; LoRA's
        dropout (peft's ``lora_dropout`` modules, when LoRA is added) follows ``mode``, so that it is
        active in training and off in evaluation."""
        super().train(False)
        for name, module in self.named_modules():
            if name.split(".")[-1] == "lora_dropout":
                module.train(mode)
        return self

    def call(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        """Run call number ``index`` on tokens ``hidden`` of shape (B, N, hidden_size)."""
        layer = self.layers[index % len(self.layers)]
        out = layer(hidden.float())  # residual stream in fp32 whatever the weights' dtype (see LlamaDecoderLayer)
        if self.final_norm is not None:
            out = self.final_norm(out).float()
        return out.to(hidden.dtype)
