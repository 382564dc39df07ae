"""DeepSpeed configs reconciled with the training config; how ranks split the training examples."""

import json

import pytest

from llamareg.config import load_config
from llamareg.distributed import DistributedContext, load_deepspeed_config
from llamareg.training.trainer import rank_examples


def _write(tmp_path, **settings):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(settings))
    return path


def test_auto_values_are_filled_from_the_training_config(tmp_path):
    config = load_config("cpu-default", ["train.batch_size=2", "train.grad_accumulation=3", "train.lr=3e-4"])
    ds, resolved = load_deepspeed_config(_write(tmp_path, train_micro_batch_size_per_gpu="auto", bf16={"enabled": True}), config, 4)
    assert ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 3
    assert ds["train_batch_size"] == 24
    assert ds["optimizer"]["params"]["lr"] == 3e-4
    assert ds["gradient_clipping"] == 0.0  # train.grad_clip's default: no clipping, as DeepSpeed's own default
    assert resolved.train.precision == "bf16"


@pytest.mark.parametrize(
    "settings, overrides, message",
    [
        ({"train_micro_batch_size_per_gpu": 2}, [], r"sets train_micro_batch_size_per_gpu=2 but train.batch_size=1"),
        ({"gradient_accumulation_steps": 4}, [], r"gradient_accumulation_steps=4 but train.grad_accumulation=1"),
        ({"train_batch_size": 8}, [], r"train_batch_size=8 but train.batch_size x train.grad_accumulation x 2 ranks=2"),
        ({"bf16": {"enabled": True}}, ["train.precision=fp32"], r"trains in bf16 but train.precision=fp32"),
        ({"optimizer": {"type": "Adam", "params": {"lr": 0.1}}}, [], r"sets lr=0.1 but train.lr=0.0003"),
        ({"zero_optimization": {"stage": 5}}, [], r"zero_optimization.stage=5"),
        ({"gradient_clipping": 1.0}, ["train.grad_clip=5"], r"gradient_clipping=1.0 but train.grad_clip=5.0"),
    ],
)
def test_contradictions_are_one_line_errors_naming_the_file(tmp_path, settings, overrides, message):
    path = _write(tmp_path, **settings)
    with pytest.raises(ValueError, match=message) as error:
        load_deepspeed_config(path, load_config("cpu-default", overrides), world_size=2)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_and_malformed_files(tmp_path):
    config = load_config("cpu-default")
    with pytest.raises(FileNotFoundError, match="--ds .*nope.json does not exist"):
        load_deepspeed_config(tmp_path / "nope.json", config, 1)
    bad = tmp_path / "bad.json"
    bad.write_text('{"fp16": {"enabled": true,}}')
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        load_deepspeed_config(bad, config, 1)


@pytest.mark.parametrize("bf16_units", [True, False])
def test_shipped_configs_resolve_on_the_cpu_never_to_fp16(monkeypatch, caplog, bf16_units):
    # fp16 configs train in what train.precision=auto picks on the CPU, whatever DeepSpeed says it supports.
    monkeypatch.setattr("llamareg.distributed.ds_config.cpu_has_bf16_units", lambda: bf16_units)
    auto = "bf16" if bf16_units else "fp32"
    config = load_config("cpu-default")
    for name, precision, fp16 in (
        ("zero2", auto, True),
        ("zero3", auto, True),
        ("zero2-bf16", "bf16", False),
        ("zero3-bf16", "bf16", False),
        ("zero2-offload", auto, True),
    ):
        caplog.clear()
        ds, resolved = load_deepspeed_config(f"ds_configs/{name}.json", config, 2)
        assert resolved.train.precision == precision and "fp16" not in ds
        assert ds["train_batch_size"] == 2
        warned = [record.getMessage() for record in caplog.records]
        assert warned == (
            [f"--ds ds_configs/{name}.json: fp16 is for GPUs; on this CPU training in {auto} (what train.precision=auto picks here)"]
            if fp16
            else []
        )
    ds, resolved = load_deepspeed_config("ds_configs/zero2.json", config, 2, device_type="cuda")
    assert resolved.train.precision == "fp16" and ds["fp16"]["enabled"]  # on a GPU the config is what it says


def test_ranks_take_disjoint_examples_that_cover_each_iteration():
    for ranks, batch, accumulation in ((1, 1, 1), (2, 1, 1), (2, 2, 3), (3, 1, 2)):
        shares = [rank_examples(1, 4, batch, accumulation, DistributedContext(rank=r, world_size=ranks)) for r in range(ranks)]
        taken = sorted(i for share in shares for i in share)
        per_iteration = batch * accumulation * ranks
        assert taken == list(range(per_iteration, 4 * per_iteration))  # iterations 1..3, each example once
    assert rank_examples(0, 3, 1, 1, DistributedContext()) == [0, 1, 2]  # one rank: example i is iteration i
