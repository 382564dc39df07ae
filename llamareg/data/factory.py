"""Build the training and validation pair datasets a config asks for."""

from __future__ import annotations

from torch.utils.data import Dataset

from llamareg.config import Config
from llamareg.data.embedded import build_embedded_volumes
from llamareg.data.pairs import EvaluationPairs, TrainingPairs, consecutive_pairs


def build_pair_datasets(config: Config) -> tuple[Dataset, Dataset]:
    """Training pairs (item i is the i-th training example) and the fixed validation pairs.

    Raises:
        ValueError: ``data.source`` names no known source.
    """
    data = config.data
    if data.source != "embedded":
        raise ValueError(f"data.source must be 'embedded', got '{data.source}'")
    train_volumes, val_volumes = build_embedded_volumes(
        shape=tuple(data.shape),
        num_train=data.num_train_subjects,
        num_val=data.num_val_subjects,
        seed=data.seed,
        max_displacement=data.max_displacement,
        control_spacing=data.control_spacing,
        spacing_mm=data.spacing_mm,
    )
    length = config.train.max_iters * config.train.batch_size
    train = TrainingPairs(train_volumes, seed=config.train.seed, length=length)
    val = EvaluationPairs(val_volumes, consecutive_pairs(len(val_volumes), data.num_val_pairs))
    return train, val
