"""The training loop end to end at a small size: outputs, checkpoints, resume, errors."""

import json

import pytest
import torch

from llamareg.commands.train import run
from llamareg.training.checkpoint import read_checkpoint

def test_run_writes_metrics_and_checkpoints(tmp_path, tiny_config):
    metrics = run(tiny_config("train.max_iters=4"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["iterations"] == metrics["iterations"] == 4
    for key in ("val_dice_identity", "val_dice", "val_folding_pct", "wall_seconds", "val_sdlogj"):
        assert isinstance(written[key], float), key
    assert 0 < written["val_dice_identity"] < 1 and 0 < written["val_dice"] < 1
    assert [h["iteration"] for h in written["history"]] == [0, 2, 4]
    assert written["llm"]["source"].startswith("gguf:") and written["llm"]["source"].endswith(".gguf")
    assert written["parameters"]["frozen"] > 3_000_000  # one SmolLM2 layer + final norm
    last = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    best = read_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert last["iteration"] == 4 and best["iteration"] == written["best_iteration"]
    assert not any(key.startswith("llm.") for key in last["model"])  # frozen weights are not copied
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_resumed_run_ends_in_the_same_state(tmp_path, tiny_config):
    run(tiny_config("train.max_iters=4", out=tmp_path / "straight"))
    run(tiny_config("train.max_iters=2", out=tmp_path / "split"))
    run(tiny_config("train.max_iters=4", out=tmp_path / "split"), resume=True)
    a = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = read_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["iteration"] == b["iteration"] == 4
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][index]["exp_avg_sq"])
    assert [h["dice"] for h in a["history"]] == [h["dice"] for h in b["history"]]


def test_resume_refuses_another_architecture(tiny_config):
    run(tiny_config("train.max_iters=2"))
    with pytest.raises(ValueError, match="model.base_channels"):
        run(tiny_config("train.max_iters=4", "model.base_channels=8"), resume=True)


def test_resume_without_checkpoint_says_so(tiny_config):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint to resume"):
        run(tiny_config("train.max_iters=2"), resume=True)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_config):
    run(tiny_config("train.max_iters=2"))
    path = tmp_path / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt"):
        read_checkpoint(path)
