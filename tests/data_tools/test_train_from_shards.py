"""Training a few iterations from shards of each layout, through the same entry point as launch/train.py."""

import json
import math

import pytest

from llamareg.commands.train import build_parser, resolve_config, run
from llamareg.data.factory import build_pair_datasets
from llamareg.data.shards import ShardSet

# The data path is under test, not the LLM: same-shaped random layers build faster than the GGUF ones.
RANDOM_LLM = "llm.source=random:smollm2-135m"


@pytest.mark.parametrize("kind, workers", [("learn2reg", 0), ("oasis", 0), ("oai", 2), ("folder", 2)])
def test_train_from_shards(kind, workers, make_dataset, build_shards_cli, tiny_config, tmp_path):
    layout, source = make_dataset(kind, count=8)  # 2 test, 2 validation and 4 training subjects: 2 for each of 2 workers
    shards = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(shards), "--shape", "32", "32", "32"]) == 0
    config = tiny_config("train.max_iters=2", f"data.source={shards}", f"data.num_workers={workers}", RANDOM_LLM, out=tmp_path / "run")
    metrics = run(config)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["iterations"] == metrics["iterations"] == 2
    assert [entry["iteration"] for entry in written["history"]] == [0, 2]
    assert written["val_pairs"] == 2  # the 2 validation subjects' 2 pairs (also data.num_val_pairs)
    assert 0 < written["val_dice_identity"] < 1 and math.isfinite(written["final_loss"])


def test_training_validates_on_the_val_pairs_and_never_reads_a_test_subject(make_dataset, build_shards_cli, tiny_config, tmp_path):
    layout, source = make_dataset("learn2reg", count=8)
    shards = tmp_path / "shards"
    assert (
        build_shards_cli(
            ["--layout", layout, "--input", str(source), "--out", str(shards), "--shape", "32", "32", "32", "--val-subjects", "3"]
        )
        == 0
    )
    stored = ShardSet(shards)
    train, val = build_pair_datasets(tiny_config(f"data.source={shards}", "data.num_val_pairs=2"))
    names = [(val[index]["moving_name"], val[index]["fixed_name"]) for index in range(len(val))]
    assert names == stored.pairs("val")[:2] == [("OASIS_0004_0000", "OASIS_0005_0000"), ("OASIS_0005_0000", "OASIS_0006_0000")]
    assert sorted(train.volumes.keys(0, 1)) == stored.keys("train") == ["OASIS_0001_0000", "OASIS_0002_0000", "OASIS_0003_0000"]
    used = {name for pair in names for name in pair} | set(stored.keys("train"))
    assert not used & set(stored.keys("test")) and set(stored.keys("test")) == {"OASIS_0007_0000", "OASIS_0008_0000"}


def test_data_flag_sets_the_source(tmp_path):
    config = resolve_config(build_parser().parse_args(["--data", str(tmp_path), "--print-config"]))
    assert config.data.source == str(tmp_path)


def test_shard_source_errors(make_dataset, build_shards_cli, tiny_config, tmp_path):
    """Checked when the datasets are built, before any training."""
    with pytest.raises(ValueError, match="is neither 'synth', 'template' nor a shard folder"):
        build_pair_datasets(tiny_config(f"data.source={tmp_path / 'absent'}"))
    layout, source = make_dataset("folder")
    shards = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(shards), "--shape", "48", "32", "32"]) == 0
    with pytest.raises(
        ValueError, match=r"holds volumes of shape \[48, 32, 32\] but data.shape is \[32, 32, 32\]; set data.shape=\[48,32,32\]"
    ):
        build_pair_datasets(tiny_config(f"data.source={shards}"))
    # A preset names the layout of its shards (paper-brain-oasis: learn2reg): folder shards are refused.
    with pytest.raises(ValueError, match="was built with --layout folder but this config .data.shard_layout. expects learn2reg"):
        build_pair_datasets(tiny_config(f"data.source={shards}", "data.shape=[48, 32, 32]", "data.shard_layout=learn2reg"))
    assert build_pair_datasets(tiny_config(f"data.source={shards}", "data.shape=[48, 32, 32]", "data.shard_layout=folder"))
    (shards / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        build_pair_datasets(tiny_config(f"data.source={shards}"))
