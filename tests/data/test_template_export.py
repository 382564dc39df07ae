"""The embedded default written as shards: the same volumes and validation pairs (no test split), and training from them."""

import json

import pytest
import torch

from llamareg.commands.train import run
from llamareg.data.template_subjects import build_embedded_volumes
from llamareg.data.factory import build_pair_datasets
from llamareg.data.nifti import read_image
from llamareg.data.shards import ShardPairStream, ShardSet, export_embedded


TEMPLATE = ("data.source=template", "train.flow_weight=0")  # the data export_embedded writes


def test_embedded_shards_hold_the_embedded_volumes(tiny_config, tmp_path):
    config = tiny_config(*TEMPLATE)
    manifest = export_embedded(config, tmp_path / "shards", shard_mb=0.2)
    assert manifest["counts"] == {
        "subjects": 7,
        "train": 4,
        "val": 3,
        "test": 0,
        "val_pairs": 2,
        "test_pairs": 0,
        "shards": 4,
        "skipped": 0,
    }
    assert manifest["pairs"] == {"val": "val_pairs.json"}  # its test set is the MNI152 dev-test, not stored here
    assert manifest["shape"] == [32, 32, 32] and manifest["label_ids"] == [0, 1, 2]
    train, val = build_embedded_volumes(
        (32, 32, 32), 4, 3, seed=0, max_displacement=config.data.max_displacement, control_spacing=12, spacing_mm=3.25
    )
    shards = ShardSet(tmp_path / "shards")
    stored = shards.load(volume.name for volume in train + val)
    for volume in train + val:
        assert torch.equal(stored[volume.name].image, volume.image) and torch.equal(stored[volume.name].labels, volume.labels)
        assert torch.equal(stored[volume.name].affine, volume.affine)
    assert shards.pairs("val") == [("mni152-val-000", "mni152-val-001"), ("mni152-val-001", "mni152-val-002")]
    image, affine = read_image(tmp_path / "shards" / "nifti" / "images" / "mni152-val-002.nii.gz")
    assert torch.equal(torch.from_numpy(image), val[2].image[0]) and torch.equal(torch.from_numpy(affine), val[2].affine)


def test_shards_validate_on_exactly_the_embedded_pairs(tiny_config, tmp_path):
    export_embedded(tiny_config(*TEMPLATE), tmp_path / "shards")
    _, embedded_val = build_pair_datasets(tiny_config("train.max_iters=2", *TEMPLATE))
    shard_train, shard_val = build_pair_datasets(tiny_config("train.max_iters=2", f"data.source={tmp_path / 'shards'}"))
    assert isinstance(shard_train, ShardPairStream)
    assert len(shard_val) == len(embedded_val) == 2
    for index in range(2):
        for key in ("moving", "fixed", "moving_labels", "fixed_labels", "moving_name", "fixed_name"):
            a, b = shard_val[index][key], embedded_val[index][key]
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, key


def test_train_and_resume_from_embedded_shards(tiny_config, tmp_path):
    export_embedded(tiny_config(), tmp_path / "shards")
    # Same-shaped random LLM layers: faster to build than the GGUF ones, and the data path is under test.
    source = [f"data.source={tmp_path / 'shards'}", "llm.source=random:smollm2-135m"]
    run(tiny_config("train.max_iters=2", *source, out=tmp_path / "run"))
    metrics = run(tiny_config("train.max_iters=3", *source, "train.val_every=3", out=tmp_path / "run"), resume=True)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["iterations"] == metrics["iterations"] == 3
    assert [entry["iteration"] for entry in written["history"]] == [0, 2, 3]
    assert written["val_pairs"] == 2


def test_a_failed_export_writes_nothing(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="num_pairs must be between 1 and 6 for 3 volumes, got 7"):
        export_embedded(tiny_config(*TEMPLATE, "data.num_val_pairs=7"), tmp_path / "shards")
    assert not (tmp_path / "shards").exists()
