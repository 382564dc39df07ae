"""Shard folders: NIfTI datasets preprocessed once into webdataset tar shards, streamed into training."""

from llamareg.data.shards.build import build_shards, plan_split
from llamareg.data.shards.template_export import export_embedded
from llamareg.data.shards.manifest import MANIFEST_NAME, PAIR_LIST_NAMES, read_manifest, verify_shard
from llamareg.data.shards.reader import ShardPairStream, ShardSet, ShardVolumeStream, distributed_position
from llamareg.data.shards.writer import ShardSetWriter

__all__ = [
    "MANIFEST_NAME",
    "PAIR_LIST_NAMES",
    "ShardPairStream",
    "ShardSet",
    "ShardSetWriter",
    "ShardVolumeStream",
    "build_shards",
    "distributed_position",
    "export_embedded",
    "plan_split",
    "read_manifest",
    "verify_shard",
]
