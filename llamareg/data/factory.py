"""Build the training and validation pair datasets a config asks for."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, IterableDataset

from llamareg.config import Config
from llamareg.data.template_subjects import build_embedded_volumes
from llamareg.data.pair_datasets import EvaluationPairs, TrainingPairs, consecutive_pairs
from llamareg.data.synth_anatomy import AnatomyOptions, SyntheticPairs
from llamareg.data.shards.reader import ShardPairStream, ShardSet


# Generated sources: a fresh pair per training example, so a stream "length" only bounds the index.
SYNTH_TRAIN_LENGTH = 2**31 - 1


def build_pair_datasets(config: Config) -> tuple[Dataset | IterableDataset, Dataset]:
    """Training pairs and the fixed validation pairs of ``data.source``.

    ``synth``: map-style synthetic pairs whose item i is a pure function of the seeds and i, training
    and validation from disjoint seed streams. ``template``: pairs of subjects warped from the MNI152
    template (training and validation subjects from disjoint seeds). A shard folder: an endless stream
    of pairs (:class:`~llamareg.data.shards.reader.ShardPairStream`) of its training subjects,
    validated on the first ``data.num_val_pairs`` pairs of its ``val_pairs.json`` (validation subjects
    set aside from the training ones), read from its shards by key; its test pairs are never read.

    Raises:
        ValueError: ``data.source`` is neither ``synth``, ``template`` nor a shard folder, or the
            folder's volumes do not have the shape ``data.shape``.
        FileNotFoundError: the shard folder has no manifest (an unfinished build).
    """
    data = config.data
    if data.source == "synth":
        return _synthetic_pair_datasets(config)
    if data.source != "template":
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


def anatomy_options(config: Config) -> AnatomyOptions:
    """The synthetic-anatomy settings of ``config.data``."""
    data = config.data
    return AnatomyOptions(
        num_labels=data.synth_labels,
        shape_control_spacing=data.synth_shape_spacing,
        shape_warp=data.synth_shape_warp,
        max_displacement=data.max_displacement,
        control_spacing=data.control_spacing,
        aligned_fraction=data.synth_aligned_fraction,
        shared_contrast=data.synth_shared_contrast,
    )


def _synthetic_pair_datasets(config: Config) -> tuple[SyntheticPairs, SyntheticPairs]:
    data, options = config.data, anatomy_options(config)
    # The training stream depends on train.seed too (another seed, other pairs); validation only on
    # data.seed, so runs with different training seeds are validated on the same pairs.
    train = SyntheticPairs(data.shape, options, f"synth-train-{config.train.seed}", data.seed, SYNTH_TRAIN_LENGTH)
    val = SyntheticPairs(data.shape, options, "synth-val", data.seed, data.num_val_pairs)
    return train, val


def check_data_source(config: Config) -> ShardSet | None:
    """Check ``data.source`` without loading volumes (the training command does it before writing
    anything): a shard folder must hold a finished build of volumes of ``data.shape``, built with the
    layout ``data.shard_layout`` names (if it names one). Returns the
    shard set, or None for the synthetic sources.

    Raises:
        ValueError, FileNotFoundError: as :func:`build_pair_datasets`.
    """
    data = config.data
    if data.source in ("synth", "template"):
        return None
    if not Path(data.source).is_dir():
        raise ValueError(
            f"data.source '{data.source}' is neither 'synth', 'template' nor a shard folder; build one with data_tools/build_shards.py"
        )
    shards = ShardSet(data.source)
    built_with = shards.manifest.get("layout")
    if data.shard_layout is not None and built_with != data.shard_layout:
        raise ValueError(
            f"{data.source} was built with --layout {built_with} but this config (data.shard_layout) expects "
            f"{data.shard_layout} shards; build them with data_tools/build_shards.py --layout {data.shard_layout} "
            f"or set data.shard_layout=null"
        )
    if list(shards.shape) != list(data.shape):
        raise ValueError(
            f"{data.source} holds volumes of shape {list(shards.shape)} but data.shape is {list(data.shape)}; "
            f"set data.shape=[{','.join(map(str, shards.shape))}] (or rebuild the shards with --shape)"
        )
    return shards


def shard_pairs(shards: ShardSet, role: str, count: int | None = None) -> EvaluationPairs:
    """The first ``count`` pairs (all with ``None``) of a shard folder's ``role`` pair list (``val`` or
    ``test``), their volumes read from its shards by key.

    Raises:
        ValueError: as :meth:`ShardSet.pairs`.
    """
    pairs = shards.pairs(role)[:count]
    keys = sorted({key for pair in pairs for key in pair})
    volumes = shards.load(keys)
    index = {key: position for position, key in enumerate(keys)}
    return EvaluationPairs([volumes[key] for key in keys], [(index[moving], index[fixed]) for moving, fixed in pairs])


def _shard_pair_datasets(config: Config) -> tuple[ShardPairStream, EvaluationPairs]:
    data = config.data
    val = shard_pairs(check_data_source(config), "val", data.num_val_pairs)
    train = ShardPairStream(data.source, seed=config.train.seed, pool_size=data.shuffle_buffer)
    return train, val
