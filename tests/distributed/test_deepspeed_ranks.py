"""Real 2-rank DeepSpeed runs on the CPU: ZeRO-2 and ZeRO-3 around the pretrained SmolLM2 layer."""

import json
import math

import pytest
import torch

from llamareg.config import load_config
from llamareg.models import build_model
from llamareg.training.checkpoint import load_model_state, read_checkpoint

TINY = [
    "data.shape=[32, 32, 32]",
    "data.num_train_subjects=4",
    "data.num_val_subjects=3",
    "data.num_val_pairs=3",
    "model.base_channels=4",
    "model.adapter_width=32",
    "model.inner_adapter_width=32",
    "train.val_every=2",
    "train.log_every=1",
    "tracking.enabled=false",
]


def _tail(process):
    return "\n".join(process.stdout.splitlines()[-25:])


@pytest.mark.parametrize("ds_config, stage", [("ds_configs/zero2.json", 2), ("ds_configs/zero3-bf16.json", 3)])
def test_two_ranks_train_agree_keep_the_llm_frozen_and_resume(launch, tmp_path, ds_config, stage):
    process = launch("tests/distributed/ds_worker.py", "--ds", ds_config, "--out", tmp_path)
    assert process.returncode == 0, _tail(process)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for report in ranks:
        assert report["zero_stage"] == stage
        assert report["llm_unchanged"]  # the frozen pretrained weights never moved
        assert report["finite"]
        # resuming in a fresh engine restores exactly the weights saved at iteration 2, then training goes on
        assert report["resumed_at"] == 2
        assert report["checksum_after_resume"] == report["checksum_first"]
        assert report["checksum_resumed"] != report["checksum_first"]
    assert ranks[0]["checksum_resumed"] == ranks[1]["checksum_resumed"]  # ranks agree on the weights
    assert ranks[0]["val_dice"] == ranks[1]["val_dice"]  # and on the gathered validation
    for report in ranks:  # four iterations of two pairs each lower the objective on held-out pairs
        assert len(report["losses"]) == 4
        assert all(norm is not None and 0 < norm < math.inf for norm in report["grad_norms"])  # the engine's own measure
        assert report["held_out_loss_after"] < 0.97 * report["held_out_loss_before"]
    total = ranks[0]["llm_elements_total"]
    held = [report["llm_elements_held"] for report in ranks]
    if stage == 3:
        # each rank holds only its half of the frozen LLM layer (DeepSpeed pads to an even split)
        assert all(total / 2 <= h <= total / 2 + 1024 for h in held)
    else:
        assert held == [total, total]


def test_launch_train_py_under_deepspeed_writes_metrics_and_a_loadable_model(launch, tmp_path):
    out = tmp_path / "run"
    first = launch("launch/train.py", "--ds", "ds_configs/zero2.json", "--max-iters", 2, "--out", out, *TINY)
    assert first.returncode == 0, _tail(first)
    # A run killed while saving leaves a partial tag folder that `latest` does not name: it is ignored.
    partial = out / "checkpoints" / "deepspeed" / "iteration00000099"
    partial.mkdir()
    (partial / "mp_rank_00_model_states.pt").write_bytes(b"truncated")
    resumed = launch("launch/train.py", "--ds", "ds_configs/zero2.json", "--max-iters", 3, "--out", out, "--resume", *TINY)
    assert resumed.returncode == 0, _tail(resumed)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["iterations"] == 3
    assert [entry["iteration"] for entry in metrics["losses"]] == [1, 2, 3]  # the first two kept from before the resume
    assert metrics["steps"][0]["iterations"] == 3
    assert (out / "checkpoints" / "deepspeed" / "latest").read_text() == "iteration00000003"
    assert not partial.exists()  # cleaned up once a newer checkpoint is complete
    # the exported single-file model loads into a model built from its config, as register/evaluate do
    payload = read_checkpoint(out / "checkpoints" / "best.pt")
    model = build_model(load_config("cpu-default", [*TINY, "llm.source=smollm2-135m"]))
    load_model_state(model, payload, "best.pt")
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())
