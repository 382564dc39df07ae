"""Build the training and validation pair datasets a config asks for."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, IterableDataset

from llamareg.config import Config
from llamareg.data.embedded import build_embedded_volumes
from llamareg.data.pairs import EvaluationPairs, TrainingPairs, consecutive_pairs
from llamareg.data.shards.reader import ShardPairStream, ShardSet


def build_pair_datasets(config: Config) -> tuple[Dataset | IterableDataset, Dataset]:
    """Training pairs and the fixed validation pairs of ``data.source``.

    ``embedded``: a map-style dataset whose item i is the i-th training example. A shard folder: an
    endless stream of pairs (:class:`~llamareg.data.shards.reader.ShardPairStream`), validated on
    the first ``data.num_val_pairs`` pairs of its ``eval_pairs.json``, read from its shards by key.

    Raises:
        ValueError: ``data.source`` is neither ``embedded`` nor a shard folder, or the folder's
            volumes do not have the shape ``data.shape``.
        FileNotFoundError: the shard folder has no manifest (an unfinished build).
    """
    data = config.data
    if data.source != "embedded":
        return _shard_pair_datasets(config)
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


def _shard_pair_datasets(config: Config) -> tuple[ShardPairStream, EvaluationPairs]:
    data = config.data
    if not Path(data.source).is_dir():
        raise ValueError(
            f"data.source '{data.source}' is neither 'embedded' nor a shard folder; build one with data_tools/build_shards.py"
        )
    shards = ShardSet(data.source)
    if list(shards.shape) != list(data.shape):
        raise ValueError(
            f"{data.source} holds volumes of shape {list(shards.shape)} but data.shape is {list(data.shape)}; "
            f"set data.shape=[{','.join(map(str, shards.shape))}] (or rebuild the shards with --shape)"
        )
    pairs = shards.eval_pairs()[: data.num_val_pairs]
    keys = sorted({key for pair in pairs for key in pair})
    volumes = shards.load(keys)
    index = {key: position for position, key in enumerate(keys)}
    val = EvaluationPairs([volumes[key] for key in keys], [(index[moving], index[fixed]) for moving, fixed in pairs])
    train = ShardPairStream(data.source, seed=config.train.seed, pool_size=data.shuffle_buffer)
    return train, val
