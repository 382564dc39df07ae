"""Datasets: volumes, the embedded MNI152-based default set and registration pairs formed on the fly."""

from llamareg.data.embedded import build_embedded_volumes
from llamareg.data.mni152 import LABEL_NAMES, load_mni152
from llamareg.data.pairs import EvaluationPairs, TrainingPairs, consecutive_pairs, make_pair
from llamareg.data.synthetic import random_intensity, random_smooth_displacement, seeded_generator, synthesize_subject
from llamareg.data.volume import Volume

__all__ = [
    "LABEL_NAMES",
    "EvaluationPairs",
    "TrainingPairs",
    "Volume",
    "build_embedded_volumes",
    "consecutive_pairs",
    "load_mni152",
    "make_pair",
    "random_intensity",
    "random_smooth_displacement",
    "seeded_generator",
    "synthesize_subject",
]
