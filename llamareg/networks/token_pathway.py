"""From 1/16 image features to LLM tokens and back to multi-scale decoder features."""

from __future__ import annotations

import torch
from torch import nn

from llamareg.networks.adapters import OutputAdapter, TokenAdapter
from llamareg.networks.frozen_llm import FrozenLLM
from llamareg.networks.positional import GridPositionalEmbedding

OUTPUT_LEVELS = (1, 2, 3, 4)  # decoder stages at 1/8, 1/4, 1/2 and full resolution


class TokenPathway(nn.Module):
    """One cascade step's trainable path through the frozen LLM.

    Tokens (one per 1/16 voxel, moving and fixed features concatenated) get the positional embedding,
    go through Adapter0 into the LLM's hidden size, through the LLM calls with an inner adapter
    between consecutive calls, and out through one output adapter per decoder stage.

    Args:
        token_channels: Width of a token (32C).
        grid: Token grid of the training shape (shape // 16), for the positional embedding.
        hidden_size: The LLM's hidden size.
        calls: Number of LLM calls.
        adapter_width: Adapter0's intermediate width.
        inner_adapter_width: The inner adapters' intermediate width.
        base_channels: C, which sets the output adapters' channels.
        positional_embedding: Whether to add the positional embedding.
    """

    def __init__(
        self,
        token_channels: int,
        grid: tuple[int, int, int],
        hidden_size: int,
        calls: int,
        adapter_width: int,
        inner_adapter_width: int,
        base_channels: int,
        positional_embedding: bool = True,
    ) -> None:
        super().__init__()
        self.positional = GridPositionalEmbedding(token_channels, grid) if positional_embedding else None
        self.input_adapter = TokenAdapter(token_channels, adapter_width, hidden_size)
        self.inner_adapters = nn.ModuleList(TokenAdapter(hidden_size, inner_adapter_width, hidden_size) for _ in range(calls - 1))
        self.output_adapters = nn.ModuleList(OutputAdapter(hidden_size, base_channels, level) for level in OUTPUT_LEVELS)
        self.out_channels = [adapter.out_channels for adapter in self.output_adapters]

    def forward(self, features: torch.Tensor, llm: FrozenLLM) -> list[torch.Tensor]:
        """Map (B, 32C, D/16, H/16, W/16) features to decoder features at 1/8, 1/4, 1/2 and full resolution."""
        grid = tuple(features.shape[2:])
        tokens = features.flatten(2).transpose(1, 2)
        if self.positional is not None:
            tokens = tokens + self.positional(grid)
        hidden = self.input_adapter(tokens)
        for index in range(llm.calls):
            if index > 0:
                hidden = self.inner_adapters[index - 1](hidden)
            hidden = llm.call(index, hidden)
        return [adapter(hidden, grid) for adapter in self.output_adapters]
