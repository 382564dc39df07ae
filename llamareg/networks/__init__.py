"""Networks: the LLaMA-Reg model and the blocks it is built from (the factory from a config is llamareg.models)."""

from llamareg.networks.llamareg import LLaMAReg

__all__ = ["LLaMAReg"]
