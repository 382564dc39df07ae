"""Training a few iterations from shards of each layout, through the same entry point as launch/train.py."""

import json
import math

import pytest

from llamareg.commands.train import build_parser, resolve_config, run
from llamareg.data.factory import build_pair_datasets

# The data path is under test, not the LLM: same-shaped random layers build faster than the GGUF ones.
RANDOM_LLM = "llm.source=random:smollm2-135m"


@pytest.mark.parametrize("kind, workers", [("learn2reg", 0), ("oasis", 0), ("oai", 2), ("folder", 2)])
def test_train_from_shards(kind, workers, make_dataset, build_shards_cli, tiny_config, tmp_path):
    layout, source = make_dataset(kind)
    shards = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(shards), "--shape", "32", "32", "32"]) == 0
    config = tiny_config("train.max_iters=2", f"data.source={shards}", f"data.num_workers={workers}", RANDOM_LLM, out=tmp_path / "run")
    metrics = run(config)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["iterations"] == metrics["iterations"] == 2
    assert [entry["iteration"] for entry in written["history"]] == [0, 2]
    expected_pairs = {"learn2reg": 1, "oasis": 2, "oai": 2, "folder": 2}[kind]  # data.num_val_pairs=2 caps the list
    assert written["val_pairs"] == expected_pairs
    assert 0 < written["val_dice_identity"] < 1 and math.isfinite(written["final_loss"])


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
    with pytest.raises(ValueError, match=r"holds volumes of shape \[48, 32, 32\] but data.shape is \[32, 32, 32\]; set data.shape=\[48,32,32\]"):
        build_pair_datasets(tiny_config(f"data.source={shards}"))
    (shards / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        build_pair_datasets(tiny_config(f"data.source={shards}"))
