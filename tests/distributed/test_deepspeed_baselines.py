"""A baseline under DeepSpeed (2 CPU ranks, ZeRO-2): LapIRN's level schedule through launch/train.py --ds."""

import json

from llamareg.config import config_from_dict
from llamareg.models import build_model
from llamareg.training.checkpoint import load_model_state, read_checkpoint

TINY = [
    "data.shape=[32, 32, 32]",
    "data.num_train_subjects=4",
    "data.num_val_subjects=3",
    "data.num_val_pairs=3",
    "train.val_every=2",
    "train.log_every=1",
    "tracking.enabled=false",
    "train.step_iters=[2, 1, 2, 1, 2]",
]


def test_lapirn_schedule_trains_under_deepspeed_and_exports_a_loadable_model(launch, tmp_path):
    out = tmp_path / "run"
    process = launch("launch/train.py", "--config", "cpu-lapirn", "--ds", "ds_configs/zero2.json", "--out", out, *TINY)
    assert process.returncode == 0, "\n".join(process.stdout.splitlines()[-25:])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["architecture"] == "lapirn" and metrics["llm"] is None
    assert [entry["iterations"] for entry in metrics["steps"]] == [2, 1, 2, 1, 2]
    for phase in ("level1", "level2-warmup", "level2", "level3-warmup", "level3"):
        assert (out / phase / "checkpoints" / "deepspeed" / "latest").is_file()
    # The exported single-file model reloads into a freshly built LapIRN with all three levels.
    payload = read_checkpoint(out / "checkpoints" / "best.pt")
    model = build_model(config_from_dict(payload["config"]))
    load_model_state(model, payload, "best.pt")
    assert model.active_levels == 3
