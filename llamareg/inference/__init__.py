"""Inference with a trained checkpoint: load it, check and read NIfTI inputs, register a pair."""

from llamareg.inference.model_io import TrainedModel, load_trained_model
from llamareg.data.pair_list import PairPaths, read_pair_list
from llamareg.inference.pair_files import check_pair, load_pair
from llamareg.inference.registration import Registration, register_pair

__all__ = [
    "PairPaths",
    "Registration",
    "TrainedModel",
    "check_pair",
    "load_pair",
    "load_trained_model",
    "read_pair_list",
    "register_pair",
]
