"""Evaluation metrics: label overlap, deformation regularity and surface distances."""

from llamareg.metrics.jacobian import folding_percentage, non_diffeomorphic_volume, sdlogj_l2r
from llamareg.metrics.overlap import dice_per_label, foreground_labels, mean_dice, nanmean, validate_label_maps
from llamareg.metrics.surface import hausdorff95

__all__ = [
    "dice_per_label",
    "folding_percentage",
    "foreground_labels",
    "hausdorff95",
    "mean_dice",
    "nanmean",
    "non_diffeomorphic_volume",
    "sdlogj_l2r",
    "validate_label_maps",
]
