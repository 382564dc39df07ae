"""The LLaMA-Reg model: dual-stream encoder, frozen LLM block, multi-scale decoder."""

from __future__ import annotations

import torch
from torch import nn

from llamareg.checks import CROP_HINT, check_shape
from llamareg.networks.bookkeeping import ParameterBookkeeping
from llamareg.networks.decoder import MultiScaleDecoder
from llamareg.networks.encoder import DualStreamEncoder
from llamareg.networks.flow_fields import FlowFieldRules
from llamareg.networks.frozen_llm import FrozenLLM
from llamareg.networks.memory_format import cat_channels, to_memory_format
from llamareg.networks.token_pathway import TokenPathway
from llamareg.networks.vit_block import ViTBlocks
from llamareg.spatial.functional import warp
from llamareg.spatial.pyramid import image_pyramid

TOKEN_STRIDE = 16


class CascadeStep(nn.Module):
    """One decoding step's own parts: positional embedding, adapters and decoder."""

    def __init__(self, pathway: TokenPathway, decoder: MultiScaleDecoder) -> None:
        super().__init__()
        self.pathway = pathway
        self.decoder = decoder


class LLaMAReg(ParameterBookkeeping):
    """LLaMA-Reg (Ma, Yang et al.): ``steps`` cascaded decoding steps (LLaMA-Reg-C``steps``).

    All steps share the encoder and the token block; each has its own positional embedding,
    adapters and decoder. Step 1 decodes from the encoder's skip features; step k > 1 from step
    k-1's decoder features, its flows residual on step k-1's flows at each scale (paper, Fig. 4).
    A step whose parameters and upstream parts are all frozen runs without autograd, so it keeps no
    activations for backward while a later step trains.

    Args:
        llm: The token block: frozen pretrained layers (:class:`FrozenLLM`) or, for the ablation,
            :class:`ViTBlocks`.
        shape: Training volume shape (D, H, W), each divisible by 16; other shapes divisible by 16
            work too (the positional embedding is resampled to their token grid).
        base_channels: C.
        adapter_width: Adapter0's intermediate width.
        inner_adapter_width: The inner adapter's intermediate width.
        positional_embedding: Whether tokens get the learnable positional embedding.
        shared_encoder: One encoder stream for both images instead of the paper's two.
        rules: How stage fields are upsampled, combined and integrated.
        steps: Number of cascaded decoding steps.

    Example:
        >>> from llamareg.llm import load_llama_layers
        >>> loaded = load_llama_layers("random:smollm2-135m", [-1])
        >>> model = LLaMAReg(FrozenLLM(loaded.layers, loaded.final_norm, calls=2), shape=(32, 32, 32), base_channels=4)
        >>> out = model(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
        >>> out["flows"][-1].shape
        torch.Size([1, 3, 32, 32, 32])
    """

    memory_format: str = "contiguous"  # set by llamareg.networks.memory_format.set_memory_format

    def __init__(
        self,
        llm: FrozenLLM | ViTBlocks,
        shape: tuple[int, int, int],
        base_channels: int = 16,
        adapter_width: int = 1024,
        inner_adapter_width: int = 1024,
        positional_embedding: bool = True,
        shared_encoder: bool = False,
        rules: FlowFieldRules | None = None,
        steps: int = 1,
    ) -> None:
        super().__init__()
        check_shape(tuple(shape), "model shape", multiple=TOKEN_STRIDE, hint=CROP_HINT)
        if steps < 1:
            raise ValueError(f"model.steps must be >= 1, got {steps}")
        self.encoder = DualStreamEncoder(base_channels, shared=shared_encoder)
        self.llm = llm
        channels = self.encoder.channels
        rules = rules or FlowFieldRules()
        self.steps = nn.ModuleList()
        for index in range(steps):
            pathway = TokenPathway(
                token_channels=2 * channels[-1],
                grid=tuple(s // TOKEN_STRIDE for s in shape),
                hidden_size=llm.hidden_size,
                calls=llm.calls,
                adapter_width=adapter_width,
                inner_adapter_width=inner_adapter_width,
                base_channels=base_channels,
                positional_embedding=positional_embedding,
            )
            if index == 0:
                skip_channels = [2 * c for c in reversed(channels[:-1])]
            else:
                skip_channels = self.steps[0].decoder.widths
            decoder = MultiScaleDecoder(base_channels, skip_channels, pathway.out_channels, rules, residual=index > 0)
            self.steps.append(CascadeStep(pathway, decoder))

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, object]:
        """Register ``moving`` to ``fixed``, both (B, 1, D, H, W) with sides divisible by 16.

        Returns:
            ``flows``: the last step's displacement fields at 1/4, 1/2 and full resolution (voxel
            units, channel k along spatial axis k, warped(x) = moving(x + u(x))); ``step_flows``: every
            step's flows; ``warped``: the moving image warped by the last full-resolution field.
        """
        if moving.shape != fixed.shape or moving.dim() != 5 or moving.shape[1] != 1:
            raise ValueError(
                f"moving and fixed must both be (B, 1, D, H, W) of one shape, got {tuple(moving.shape)} and {tuple(fixed.shape)}"
            )
        check_shape(tuple(moving.shape[2:]), "input shape", multiple=TOKEN_STRIDE, hint=CROP_HINT)
        moving, fixed = to_memory_format(moving, self.memory_format), to_memory_format(fixed, self.memory_format)
        grad_wanted = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad_wanted and _trains(self.encoder)):
            moving_features, fixed_features = self.encoder(moving, fixed)
        upstream_trains = _trains(self.encoder) or _trains(self.llm)
        tokens = torch.cat([moving_features[-1], fixed_features[-1]], dim=1)
        skips = [cat_channels([m, f]) for m, f in zip(reversed(moving_features[:-1]), reversed(fixed_features[:-1]))]
        pyramid = image_pyramid(moving)
        flows = None
        step_flows = []
        for step in self.steps:
            upstream_trains = upstream_trains or _trains(step)
            with torch.set_grad_enabled(grad_wanted and upstream_trains):
                llm_features = step.pathway(tokens, self.llm)
                flows, skips = step.decoder(skips, llm_features, pyramid, previous_flows=flows)
            step_flows.append(flows)
        return {"flows": flows, "step_flows": step_flows, "warped": warp(moving, flows[-1])}

    def train_only(self, steps: set[int], shared: bool) -> None:
        """Make only the given steps (0-based) trainable, and the shared parts (encoder, trainable
        parts of the token block such as LoRA factors, ViT blocks or ``llm.trainable`` layers) only if
        ``shared``.

        Frozen LLM weights stay frozen whatever is asked.
        """
        frozen = set(self.llm.frozen_weight_names())
        for name, parameter in self.encoder.named_parameters():
            parameter.requires_grad_(shared)
        for name, parameter in self.llm.named_parameters():
            parameter.requires_grad_(shared and name not in frozen)
        for index, step in enumerate(self.steps):
            step.requires_grad_(index in steps)


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())
