"""The memory format of a network's 3D convolutions: NCDHW (``contiguous``) or NDHWC (``channels_last``).

oneDNN runs a 3D convolution in channels-last directly and a contiguous one through its blocked
layouts, so with the weights in channels-last every convolution's output is channels-last too and the
layout carries through the network (element-wise ops and trilinear upsampling keep it): a
``cpu-default`` training step is 1.36x faster in fp32 (benchmarks/results/speed.md). The flow fields
come out channels-last, which is already the (B, D, H, W, 3) layout ``grid_sample`` wants.

Two places would drop back to contiguous, and every convolution after them would copy its input
back: a one-channel image (an input, or a warped image) is strided as NCDHW, which PyTorch reads as
contiguous, so the first convolution's output is contiguous; and ``torch.cat`` of tensors in different
layouts is contiguous. Networks therefore take their inputs through :func:`to_memory_format` (a
one-channel image gets channels-last strides over the same memory, without a copy) and concatenate
features with :func:`cat_channels`.

The format is a property of the weights: it survives ``.to(device)``, ``load_state_dict`` (which copies
into the existing tensors) and optimiser steps (which update in place).
"""

from __future__ import annotations

import torch
from torch import nn

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last_3d}


def resolve_memory_format(name: str, device_type: str, precision: str) -> str:
    """``model.memory_format`` for a device: ``auto`` is ``channels_last`` on the CPU (measured: oneDNN),
    and on CUDA with fp16/bf16 autocast (cuDNN's tensor-core kernels are NDHWC); ``contiguous`` for
    fp32 on CUDA.

    Raises:
        ValueError: ``name`` is not ``auto``, ``contiguous`` or ``channels_last``.
    """
    if name == "auto":
        if device_type == "cuda" and precision == "fp32":
            return "contiguous"
        return "channels_last"
    if name not in MEMORY_FORMATS:
        raise ValueError(f"model.memory_format must be auto, contiguous or channels_last, got '{name}'")
    return name


def set_memory_format(model: nn.Module, name: str) -> nn.Module:
    """Put every 5D parameter and buffer (the 3D convolution weights) of ``model`` in the named format,
    in place, and return ``model``. Other tensors are left as they are."""
    model.memory_format = name  # the networks' forward puts their inputs in it (to_memory_format)
    _restride([*model.parameters(), *model.buffers()], MEMORY_FORMATS[name])
    return model


def _restride(tensors: list[torch.Tensor], memory_format: torch.memory_format) -> None:
    """Lay out the 5D ``tensors`` in ``memory_format``, in place (their ``.data``)."""
    with torch.no_grad():
        for tensor in tensors:
            if tensor.dim() == 5 and not tensor.is_contiguous(memory_format=memory_format):
                tensor.data = tensor.data.contiguous(memory_format=memory_format)


def to_memory_format(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` (B, C, D, H, W) in the named layout; a contiguous one-channel ``x`` becomes a channels-last
    view of the same memory, other tensors are copied only if they are not in that layout yet."""
    if name != "channels_last":
        return x
    if x.shape[1] == 1 and x.is_contiguous():
        batch, _, depth, height, width = x.shape
        return x.view(batch, depth, height, width, 1).permute(0, 4, 1, 2, 3)
    return x.contiguous(memory_format=torch.channels_last_3d)


def cat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(tensors, dim=1)``, channels-last when a tensor of more than one channel is.

    Example:
        >>> image = torch.rand(1, 1, 4, 4, 4)
        >>> features = torch.rand(1, 8, 4, 4, 4).contiguous(memory_format=torch.channels_last_3d)
        >>> cat_channels([features, image]).is_contiguous(memory_format=torch.channels_last_3d)
        True
    """
    if any(t.shape[1] > 1 and t.stride(1) == 1 for t in tensors):
        tensors = [to_memory_format(t, "channels_last") for t in tensors]
    return torch.cat(tensors, dim=1)


def contiguous_weights(model: nn.Module) -> nn.Module:
    """Make ``model``'s 5D parameters contiguous again, in place, keeping its layout for activations.

    For DeepSpeed, which broadcasts and flattens parameters as plain contiguous storage (a channels-last
    weight fails its byte view). The network still puts its inputs in channels-last, and oneDNN then
    runs each convolution channels-last, converting the small weight tensor on the fly.
    """
    _restride(list(model.parameters()), torch.contiguous_format)
    return model


def memory_format_of(model: nn.Module) -> str:
    """The layout ``model`` runs its convolutions in, as :func:`set_memory_format` set it."""
    return getattr(model, "memory_format", "contiguous")
