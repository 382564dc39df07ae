"""Parameter bookkeeping shared by every registration network (LLaMA-Reg and the baselines)."""

from __future__ import annotations

from torch import nn


class ParameterBookkeeping(nn.Module):
    """Base for networks whose parts are frozen and unfrozen by training phase.

    The trainers build their optimizer from :meth:`trainable_parameters` and log
    :meth:`parameter_counts` once per phase.

    Example:
        >>> net = ParameterBookkeeping()
        >>> net.conv = nn.Conv3d(1, 2, 1)
        >>> _ = net.conv.bias.requires_grad_(False)
        >>> net.parameter_counts()
        {'trainable': 2, 'frozen': 2}
    """

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters that currently require gradients."""
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and frozen parameter counts (shared tensors counted once)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        return {"trainable": trainable, "frozen": frozen}
