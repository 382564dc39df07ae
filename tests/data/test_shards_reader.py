"""Reading shards: rank x worker shares, pairs formed while reading, and damaged shards as clear errors."""

import io
import itertools
import json
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, get_worker_info

from llamareg.data.shards import ShardPairStream, ShardSet, ShardSetWriter, ShardVolumeStream
from llamareg.data.shards.manifest import file_digest

SHAPE = (16, 16, 16)


def pair(out, moving, fixed):
    return {"moving": out / f"{moving}.nii.gz", "fixed": out / f"{fixed}.nii.gz", "moving_labels": out / "l0", "fixed_labels": out / "l1"}


def write_shards(out, train=8, val=2, test=2, shard_mb=0.001):
    """Random subjects ``t0..``, ``v0..`` and ``x0..`` (test); the default size puts each volume in its own shard."""
    rng = np.random.default_rng(0)
    writer = ShardSetWriter(out, shard_mb=shard_mb)
    for split, prefix, count in (("train", "t", train), ("val", "v", val), ("test", "x", test)):
        for index in range(count):
            image = rng.random(SHAPE, dtype=np.float32)
            labels = (image > 0.5).astype(np.int64) + (image > 0.8)
            writer.add(f"{prefix}{index}", split, image, labels, np.eye(4), {"image": out / f"{prefix}{index}.nii.gz", "labels": None})
    writer.finish([pair(out, "v0", "v1")], [pair(out, "x1", "x0")] if test else None, {"layout": "test"})
    return out


def test_pairs_by_role(tmp_path):
    shards = ShardSet(write_shards(tmp_path / "shards", train=2))
    assert shards.pairs("val") == [("v0", "v1")] and shards.pairs("test") == [("x1", "x0")]
    assert [entry["name"] for entry in shards.manifest["shards"]] == [f"{s}-00000{i}.tar" for s in ("train", "val", "test") for i in (0, 1)]
    with pytest.raises(ValueError, match="pair role must be one of val, test, got 'eval'"):
        shards.pairs("eval")
    without_test = ShardSet(write_shards(tmp_path / "no_test", train=2, test=0))
    assert without_test.manifest["pairs"] == {"val": "val_pairs.json"} and not (without_test.directory / "test_pairs.json").exists()
    with pytest.raises(ValueError, match="no_test has no test pairs: it was built without a test split"):
        without_test.pairs("test")


@pytest.mark.parametrize(
    "val_pairs, test_pairs, message",
    [
        ([], None, "no validation pair is left"),
        ([("v0", "x1")], None, "validation pair names .*x1.nii.gz, which is not a stored validation subject"),
        ([("v0", "v1")], [], "no test pair is left"),
        ([("v0", "v1")], [("x0", "v1")], "test pair names .*v1.nii.gz, which is not a stored test subject"),
    ],
)
def test_each_role_pairs_only_its_own_subjects(val_pairs, test_pairs, message, tmp_path):
    out = tmp_path / "shards"
    writer = ShardSetWriter(out)
    for key, split in (("t0", "train"), ("t1", "train"), ("v0", "val"), ("v1", "val"), ("x0", "test"), ("x1", "test")):
        writer.add(key, split, np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.int64), np.eye(4), {"image": out / f"{key}.nii.gz"})
    with pytest.raises(ValueError, match=message):
        writer.finish(
            [pair(out, *keys) for keys in val_pairs], None if test_pairs is None else [pair(out, *keys) for keys in test_pairs], {}
        )


def name_and_worker(volume):
    """collate_fn run inside the worker: which volume, read by which worker."""
    info = get_worker_info()
    return volume.name, info.id if info else 0


def shares(out, world_size=2, workers=2):
    """{(rank, worker): [keys read]} over one pass."""
    seen = {}
    for rank in range(world_size):
        stream = ShardVolumeStream(out, rank=rank, world_size=world_size, seed=3)
        for name, worker in DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=name_and_worker):
            seen.setdefault((rank, worker), []).append(name)
    return seen


@pytest.mark.parametrize("shard_mb", [0.001, 1.0], ids=["shard-per-volume", "one-shard"])
def test_two_ranks_by_two_workers_read_disjoint_shares_covering_the_set(shard_mb, tmp_path):
    out = write_shards(tmp_path / "shards", train=9, shard_mb=shard_mb)
    assert len(ShardSet(out).shards("train")) == (9 if shard_mb < 0.01 else 1)
    seen = shares(out)
    assert sorted(seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # every reader got a share
    everything = [key for keys in seen.values() for key in keys]
    assert len(everything) == len(set(everything)) == 9  # disjoint: no volume read twice
    assert set(everything) == {f"t{i}" for i in range(9)}  # covering


def test_pairs_are_distinct_subjects_reaching_every_ordered_pair(tmp_path):
    out = write_shards(tmp_path / "shards", train=4)
    pairs = list(itertools.islice(ShardPairStream(out, seed=1, pool_size=4), 300))
    names = [(pair["moving_name"], pair["fixed_name"]) for pair in pairs]
    assert all(moving != fixed for moving, fixed in names)
    assert set(names) == {(a, b) for a in ("t0", "t1", "t2", "t3") for b in ("t0", "t1", "t2", "t3") if a != b}
    assert pairs[0]["moving"].shape == (1, *SHAPE) and pairs[0]["fixed_labels"].dtype == torch.int64
    again = [(p["moving_name"], p["fixed_name"]) for p in itertools.islice(ShardPairStream(out, seed=1, pool_size=4), 300)]
    assert again == names  # a seed fixes the stream
    resumed = ShardPairStream(out, seed=1, pool_size=4).starting_at(10)
    assert [(p["moving_name"], p["fixed_name"]) for p in itertools.islice(resumed, 50)] != names[:50]  # reseeded by position


def test_pair_batches_from_two_workers(tmp_path):
    out = write_shards(tmp_path / "shards", train=6)
    loader = DataLoader(ShardPairStream(out, pool_size=3), batch_size=2, num_workers=2)
    batches = list(itertools.islice(loader, 6))
    assert [batch["moving"].shape for batch in batches] == [torch.Size([2, 1, *SHAPE])] * 6
    assert all(0 <= batch["fixed"].min() and batch["fixed"].max() <= 1 for batch in batches)


def test_reader_with_one_subject_cannot_form_pairs(tmp_path):
    out = write_shards(tmp_path / "shards", train=3, shard_mb=1.0)
    with pytest.raises(ValueError, match="reader 1 of 2 .* gets 1 training subject"):
        next(iter(ShardPairStream(out, rank=1, world_size=2)))


def test_missing_manifest_and_missing_shard(tmp_path):
    out = write_shards(tmp_path / "shards")
    (out / "train-000003.tar").unlink()
    with pytest.raises(FileNotFoundError, match="train-000003.tar listed in the manifest is missing"):
        list(ShardVolumeStream(out))
    (out / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"{out} has no manifest.json; the build did not finish - rerun build_shards.py"):
        ShardVolumeStream(out)


def test_truncated_shard_is_a_clear_error(tmp_path):
    out = write_shards(tmp_path / "shards", shard_mb=1.0)
    shard = out / "train-000000.tar"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])
    with pytest.raises(ValueError, match=f"shard {shard} is {size // 2} bytes but the manifest says {size}: it is truncated"):
        next(iter(ShardVolumeStream(out)))
    # Even with a manifest that agrees with the cut file, reading stops with an error instead of a short set.
    update_manifest(out, shard)
    with pytest.raises(ValueError, match=f"shard {shard} (cannot be read|holds .* samples but the manifest says)"):
        list(ShardVolumeStream(out))


def test_damaged_bytes_fail_the_checksum(tmp_path):
    out = write_shards(tmp_path / "shards")
    shard = out / "train-000002.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF  # inside the image array: the tar stays readable, only the checksum can tell
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="train-000002.tar fails its SHA-256 check"):
        ShardSet(out).load(["t2"])


def update_manifest(out, shard):
    """Make the manifest agree with a tampered shard, so that only decoding can catch the damage."""
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(entry for entry in manifest["shards"] if entry["name"] == shard.name)
    entry["bytes"], entry["sha256"] = file_digest(shard)
    (out / "manifest.json").write_text(json.dumps(manifest))


def rewrite_member(shard, member, data):
    """Replace one member's bytes in a tar shard."""
    with tarfile.open(shard) as archive:
        members = [(info, archive.extractfile(info).read()) for info in archive.getmembers()]
    with tarfile.open(shard, "w") as archive:
        for info, content in members:
            content = data if info.name.endswith(member) else content
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))


def npy(array, **kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "member, data, message",
    [
        ("image.npy", b"\x93NUMPY garbage", "member image.npy is not a plain .npy array"),
        ("labels.npy", npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "member labels.npy is not a plain .npy array"),
        ("image.npy", npy(np.full(SHAPE, np.nan, np.float32)), "image holds NaN or infinite values"),
        (
            "image.npy",
            npy(np.zeros((15, 16, 16), np.float32)),
            r"image is float32 \(15, 16, 16\) but the manifest says float32 \(16, 16, 16\)",
        ),
        ("labels.npy", npy(np.zeros(SHAPE, np.float32)), "labels are float32"),
        ("meta.json", b"{not json", "meta.json is not valid metadata"),
    ],
    ids=["garbage", "pickle", "nan", "shape", "float-labels", "meta"],
)
def test_corrupt_member_is_named_never_a_wrong_sample(member, data, message, tmp_path):
    out = write_shards(tmp_path / "shards")
    shard = out / "train-000001.tar"
    rewrite_member(shard, member, data)
    update_manifest(out, shard)
    with pytest.raises(ValueError, match=f"{shard}, subject t1: .*{message}"):
        list(ShardVolumeStream(out))
