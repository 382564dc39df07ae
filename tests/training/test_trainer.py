"""The training loop end to end at a small size: outputs, checkpoints, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llamareg.commands.train import run
from llamareg.training.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_run_writes_metrics_and_checkpoints(tmp_path, tiny_config):
    metrics = run(tiny_config("train.max_iters=4"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["iterations"] == metrics["iterations"] == 4
    for key in ("val_dice_identity", "val_dice", "val_folding_pct", "wall_seconds", "val_sdlogj_l2r"):
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


def test_a_time_limit_stops_validates_and_checkpoints_the_run(tmp_path, tiny_config):
    # A limit of about 0.1 s: spent after the first iteration (validation at iteration 0 included).
    metrics = run(tiny_config("train.max_iters=50", "train.max_minutes=0.002", "train.val_every=20"))
    assert metrics["stopped_by"] == "max_minutes" and 1 <= metrics["iterations"] < 50
    assert metrics["history"][-1]["iteration"] == metrics["iterations"]  # validated where it stopped
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == metrics["iterations"]
    assert run(tiny_config("train.max_iters=2", out=tmp_path / "untimed"))["stopped_by"] == "max_iters"


def test_a_compiled_run_trains_and_saves_the_uncompiled_model_s_weights(tmp_path, tiny_config):
    eager = run(tiny_config("train.max_iters=2", "train.precision=fp32", out=tmp_path / "eager"))
    compiled = run(tiny_config("train.max_iters=2", "train.precision=fp32", "train.compile=true", out=tmp_path / "compiled"))
    a = read_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")["model"]
    b = read_checkpoint(tmp_path / "compiled" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()  # no "_orig_mod." prefix: register and evaluate load it as any other
    # In fp32 the compiled kernels round differently from the eager ones, nothing more. Where a gradient
    # is near zero that rounding can flip its sign, and Adam's update moves a weight by about lr whatever
    # the gradient's size: two steps apart in sign differ by up to 2 x 2 x lr, on a few weights only.
    lr = tiny_config().train.lr
    differences = torch.cat([(a[key] - b[key]).abs().flatten() for key in a])
    assert differences.max() <= 4.4 * lr and differences.mean() < 3e-7
    assert abs(compiled["val_dice"] - eager["val_dice"]) < 0.01


def test_loss_terms_are_read_from_the_device_only_when_logged(tiny_config, monkeypatch):
    from llamareg.training.trainer import Trainer

    reads = []
    original = Trainer._read_terms
    monkeypatch.setattr(Trainer, "_read_terms", lambda self, terms: reads.append(self.iteration) or original(self, terms))
    metrics = run(tiny_config("train.max_iters=10", "train.log_every=5", "train.val_every=10", "train.checkpoint_every=0"))
    assert reads == [5, 10] and [entry["iteration"] for entry in metrics["losses"]] == [5, 10]


def test_every_logged_iteration_records_the_gradient_norm_and_clipping_bounds_the_step(tiny_config, tmp_path):
    settings = ("train.max_iters=3", "train.log_every=1", "train.precision=fp32")
    unclipped = run(tiny_config(*settings, out=tmp_path / "free"))
    norms = [entry["grad_norm"] for entry in unclipped["losses"]]
    assert len(norms) == 3 and all(norm > 0 for norm in norms)
    # Clipped far below what the gradients have, every step's gradients are scaled down (differently per
    # step), which changes what Adam does with them: other weights.
    clip = min(norms) / 100
    clipped = run(tiny_config(*settings, f"train.grad_clip={clip}", out=tmp_path / "clip"))
    assert [entry["grad_norm"] for entry in clipped["losses"]][0] == pytest.approx(norms[0], rel=1e-5)  # measured before clipping
    free = read_checkpoint(tmp_path / "free" / "checkpoints" / "last.pt")["model"]
    bounded = read_checkpoint(tmp_path / "clip" / "checkpoints" / "last.pt")["model"]
    assert any(not torch.allclose(free[key], bounded[key]) for key in free)


def test_a_diverging_run_stops_with_a_clear_error_before_saving(tiny_config, tmp_path):
    with pytest.raises(FloatingPointError, match="lower train.lr or use train.precision=fp32"):
        run(tiny_config("train.max_iters=6", "train.lr=1e30", "train.log_every=1", "train.precision=fp32", "train.flow_weight=0"))
    assert not (tmp_path / "checkpoints" / "last.pt").exists() or read_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 0


def test_resume_may_change_the_memory_layout_only(tiny_config):
    run(tiny_config("train.max_iters=2", "model.memory_format=contiguous"))
    assert run(tiny_config("train.max_iters=4", "model.memory_format=channels_last"), resume=True)["iterations"] == 4


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


def test_a_finished_run_is_replaced_only_with_overwrite(tmp_path, tiny_config):
    run(tiny_config("train.max_iters=2"))
    best = (tmp_path / "checkpoints" / "best.pt").read_bytes()
    metrics = (tmp_path / "metrics.json").read_text()
    with pytest.raises(ValueError, match=r"--out .* already holds a run .*--resume.*--overwrite"):
        run(tiny_config("train.max_iters=2", "train.seed=1"))
    assert (tmp_path / "checkpoints" / "best.pt").read_bytes() == best and (tmp_path / "metrics.json").read_text() == metrics
    run(tiny_config("train.max_iters=2", "train.seed=1"), overwrite=True)
    assert (tmp_path / "checkpoints" / "best.pt").read_bytes() != best


def test_resuming_a_finished_run_refuses_a_changed_model(tiny_config):
    run(tiny_config("train.max_iters=2"))
    with pytest.raises(ValueError, match="model.base_channels"):  # before: exit 0, the override ignored
        run(tiny_config("train.max_iters=2", "model.base_channels=8"), resume=True)


def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path, tiny_config):
    """SIGKILL once the first resume point between validations is on disk; ``--resume`` then loses at most
    ``train.checkpoint_every`` iterations and ends with the uninterrupted run's weights. Every run is a
    one-thread process, so that all three do the same arithmetic."""
    overrides = ("train.max_iters=16", "train.val_every=16", "train.checkpoint_every=4")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(out: Path, *flags: str) -> list[str]:
        config_file = tmp_path / f"{out.name}.yaml"
        config_file.write_text(tiny_config(*overrides, out=out).to_yaml())
        return [sys.executable, str(ROOT / "launch" / "train.py"), "--config", str(config_file), *flags]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(command(straight), check=True, capture_output=True, env=environment)
    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.is_file(), "no resume point was written before validation"
    saved = read_checkpoint(last)["iteration"]
    assert saved % 4 == 0 and 4 <= saved < 16  # written between validations, every checkpoint_every iterations
    subprocess.run(command(killed, "--resume"), check=True, capture_output=True, env=environment)
    a = read_checkpoint(straight / "checkpoints" / "last.pt")
    b = read_checkpoint(last)
    assert a["iteration"] == b["iteration"] == 16
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.parametrize(
    "override, culprit",
    [
        ("train.lr=-1", "train.lr"),
        ("train.checkpoint_every=-5", "train.checkpoint_every"),
        ("train.max_minutes=-1", "train.max_minutes"),
        ("train.grad_clip=-1", "train.grad_clip"),
        ("model.memory_format=nhwc", "model.memory_format"),
    ],
)
def test_bad_training_values_are_refused_before_anything_is_written(tmp_path, tiny_config, override, culprit):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=culprit):
        run(tiny_config("train.max_iters=2", override, out=out))
    assert not out.exists()


def test_an_out_that_is_a_file_is_refused(tmp_path, tiny_config):
    path = tmp_path / "a_file"
    path.write_text("not a run")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run(tiny_config("train.max_iters=2", out=path))
    assert path.read_text() == "not a run"
