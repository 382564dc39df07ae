"""Networks: the LLaMA-Reg model and the blocks it is built from."""

from llamareg.networks.llamareg import LLaMAReg, build_model

__all__ = ["LLaMAReg", "build_model"]
