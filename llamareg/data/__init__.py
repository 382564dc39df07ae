"""Datasets: volumes, the embedded MNI152-based default set, NIfTI datasets as shards, and pairs formed on the fly."""

from llamareg.data.template_subjects import build_embedded_volumes
from llamareg.data.layouts import LAYOUTS, DiscoveredDataset, SubjectRecord, discover
from llamareg.data.mni152 import LABEL_NAMES, load_mni152
from llamareg.data.nifti import read_image, read_label_map, read_subject
from llamareg.data.pair_datasets import EvaluationPairs, TrainingPairs, consecutive_pairs, make_pair
from llamareg.data.preprocess import Preprocessing, preprocess_subject
from llamareg.data.shards import ShardPairStream, ShardSet, ShardVolumeStream, build_shards, export_embedded, read_manifest
from llamareg.data.synthetic import random_intensity, random_smooth_displacement, seeded_generator, synthesize_subject
from llamareg.data.volume import Volume

__all__ = [
    "LABEL_NAMES",
    "LAYOUTS",
    "DiscoveredDataset",
    "EvaluationPairs",
    "Preprocessing",
    "ShardPairStream",
    "ShardSet",
    "ShardVolumeStream",
    "SubjectRecord",
    "TrainingPairs",
    "Volume",
    "build_embedded_volumes",
    "build_shards",
    "consecutive_pairs",
    "discover",
    "export_embedded",
    "load_mni152",
    "make_pair",
    "preprocess_subject",
    "read_image",
    "read_label_map",
    "read_manifest",
    "read_subject",
    "random_intensity",
    "random_smooth_displacement",
    "seeded_generator",
    "synthesize_subject",
]
