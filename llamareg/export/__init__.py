"""Exporting a trained checkpoint as a shippable model: ``model.safetensors`` with its model card."""

from llamareg.export.pretrained import ExportedModel, export_pretrained

__all__ = ["ExportedModel", "export_pretrained"]
