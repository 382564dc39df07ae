"""llamareg: unsupervised deformable 3D registration with frozen pretrained LLaMA layers (LLaMA-Reg)."""

__version__ = "0.1.0"
