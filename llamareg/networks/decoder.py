"""The single-pass multi-scale decoder S1..S4 (1/8, 1/4, 1/2 and full resolution)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llamareg.networks.blocks import ConvBlock, FlowHead, upsample_conv
from llamareg.networks.flow_fields import FlowFieldRules
from llamareg.spatial.functional import warp
from llamareg.networks.memory_format import cat_channels

STAGES = 4
FLOW_STAGES = 3  # S2..S4 predict flows at 1/4, 1/2 and full resolution


class MultiScaleDecoder(nn.Module):
    """Decoder of one LLaMA-Reg step.

    Stage S1 (1/8) fuses the skip features with the LLM features; S2 (1/4) adds the upsampled S1
    features and predicts the first flow; S3 and S4 also see the upsampled flow so far and the moving
    image warped by it, and predict a residual field combined with it (see :class:`FlowFieldRules`).

    In a later cascade step (``residual=True``) every flow stage instead starts from the previous
    step's flow at its own scale: it sees that flow and the moving image warped by it, and its field
    is combined with it (paper, Fig. 4).

    Args:
        base_channels: C; stage features have 8C, 4C, 2C and C channels.
        skip_channels: Channels of the skip features at 1/8, 1/4, 1/2 and full resolution (the two
            encoder streams concatenated for the first step).
        llm_channels: Channels of the LLM features at the same four levels.
        rules: How fields are upsampled, combined and integrated.
        residual: Whether the flows are residual on a previous cascade step's flows.
    """

    def __init__(
        self,
        base_channels: int,
        skip_channels: Sequence[int],
        llm_channels: Sequence[int],
        rules: FlowFieldRules,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if len(skip_channels) != STAGES or len(llm_channels) != STAGES:
            raise ValueError(f"decoder needs {STAGES} skip and LLM channel counts, got {skip_channels}, {llm_channels}")
        widths = [base_channels * 2 ** (3 - stage) for stage in range(STAGES)]
        self.rules = rules
        self.ups = nn.ModuleList(upsample_conv(widths[s], widths[s + 1]) for s in range(STAGES - 1))
        # Stages that start from a flow also take it (3 channels) and the moving image warped by it (1).
        extra = [0] + [widths[s] + (4 if residual or s > 1 else 0) for s in range(1, STAGES)]
        self.stages = nn.ModuleList(ConvBlock(skip_channels[s] + llm_channels[s] + extra[s], widths[s]) for s in range(STAGES))
        self.heads = nn.ModuleList(FlowHead(widths[s]) for s in range(1, STAGES))
        self.widths = widths
        self.residual = residual

    def forward(
        self,
        skips: Sequence[torch.Tensor],
        llm_features: Sequence[torch.Tensor],
        moving_pyramid: Sequence[torch.Tensor],
        previous_flows: Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Decode one step.

        Args:
            skips: Skip features at 1/8, 1/4, 1/2, full resolution.
            llm_features: LLM features at the same levels.
            moving_pyramid: The moving image at 1/4, 1/2 and full resolution.
            previous_flows: The previous cascade step's flows at 1/4, 1/2 and full resolution
                (required when ``residual``).

        Returns:
            The flows at 1/4, 1/2 and full resolution (voxel units of their grids), and the stage
            features at 1/8, 1/4, 1/2 and full resolution (what a next cascade step takes as skips).
        """
        if self.residual != (previous_flows is not None):
            raise ValueError("a residual decoder needs the previous step's flows, and only it takes them")
        features = [self.stages[0](cat_channels([skips[0], llm_features[0]]))]
        flows: list[torch.Tensor] = []
        for s in range(1, STAGES):
            inputs = [skips[s], self.ups[s - 1](features[-1]), llm_features[s]]
            start = None
            if previous_flows is not None:
                start = previous_flows[s - 1]
            elif flows:
                start = self.rules.upsample(flows[-1], tuple(skips[s].shape[2:]))
            if start is not None:
                inputs += [start, warp(moving_pyramid[s - 1], start)]
            features.append(self.stages[s](cat_channels(inputs)))
            field = self.rules.field(self.heads[s - 1](features[-1]))
            flows.append(field if start is None else self.rules.combine(start, field))
        return flows, features
