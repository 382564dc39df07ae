"""No checkpoint is chosen on a test pair: for a single step, a cascade trained step by step and LapIRN's
levels, every run records in ``selection.json`` (and every checkpoint) the pairs its validations read,
and these never meet the data's test pairs.

The runs train from a tiny shard folder with all three roles (training, validation and test subjects),
so that validation and test pairs are both concrete subject pairs of one folder; a run wired to validate
on the test pairs is caught by the same check.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from llamareg.commands.train import run
from llamareg.config import load_config
from llamareg.data.template_subjects import build_embedded_volumes
from llamareg.data.shards import ShardSet
from llamareg.data.shards.writer import ShardSetWriter
from llamareg.training.checkpoint import read_checkpoint
from llamareg.training.selection import SELECTION_FILE, data_roles

# The pair bookkeeping is under test, not the LLM: same-shaped random layers build faster than the GGUF ones.
RANDOM_LLM = "llm.source=random:smollm2-135m"
# Like tests/baselines' tiny runs: MSE, no true-flow term (shard pairs carry none), two validation pairs.
TINY_LAPIRN = [
    "train.flow_weight=0",
    "train.similarity=mse",
    "train.reg_weight=0.02",
    "data.shape=[32, 32, 32]",
    "data.num_val_pairs=2",
    "train.log_every=1",
    "tracking.enabled=false",
]
SPLITS = {"train": 3, "val": 3, "test": 3}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """A shard folder of 32^3 subjects (the embedded data's MNI152 subjects): 3 training, 3 validation
    and 3 test subjects, validation pairs ``val-0->val-1``, ``val-1->val-2``, ``val-2->val-0`` and test
    pairs ``test-0->test-1``, ``test-1->test-2``."""
    out = tmp_path_factory.mktemp("selection") / "shards"
    train, others = build_embedded_volumes((32, 32, 32), num_train=SPLITS["train"], num_val=SPLITS["val"] + SPLITS["test"])
    volumes = {"train": train, "val": others[: SPLITS["val"]], "test": others[SPLITS["val"] :]}
    writer = ShardSetWriter(out)
    for split, members in volumes.items():
        for index, volume in enumerate(members):
            key = f"{split}-{index}"
            writer.add(
                key,
                split,
                volume.image[0].numpy(),
                volume.labels[0].numpy(),
                volume.affine.numpy(),
                {"image": out / f"{key}.nii.gz", "labels": out / f"{key}_labels.nii.gz"},
            )

    def pair(moving: str, fixed: str) -> dict:
        return {
            "moving": out / f"{moving}.nii.gz",
            "fixed": out / f"{fixed}.nii.gz",
            "moving_labels": out / f"{moving}_labels.nii.gz",
            "fixed_labels": out / f"{fixed}_labels.nii.gz",
        }

    writer.finish(
        [pair("val-0", "val-1"), pair("val-1", "val-2"), pair("val-2", "val-0")],
        [pair("test-0", "test-1"), pair("test-1", "test-2")],
        {"layout": "selection-test"},
    )
    return out


def _ids(pairs) -> list[str]:
    return [f"{moving}->{fixed}" for moving, fixed in pairs]


def check_apart_from_test(out: Path, folders: list[str], first_phase: bool = True) -> dict:
    """Assert that no checkpoint choice of the run in ``out`` (phases in ``folders``, ``[]`` for a single
    phase; ``first_phase`` false for a later phase's own folder) read a test pair; returns the run's
    selection record."""
    selection = json.loads((out / SELECTION_FILE).read_text())
    validation, test = selection["validation"], selection["test"]
    # Both roles recorded, concretely, and apart.
    assert validation["pairs"] and test["pairs"] and validation["subjects"] and test["subjects"]
    assert not set(validation["pairs"]) & set(test["pairs"]), "a validation pair is a test pair"
    assert not set(validation["subjects"]) & set(test["subjects"]), "a validation pair uses a test subject"
    assert not set(selection["training"].get("subjects", [])) & (set(test["subjects"]) | set(validation["subjects"]))
    assert test["read_by"] == []
    # Every phase: its validations read only validation pairs, and its best checkpoint was chosen on them.
    phases = selection["phases"]
    assert len(phases) == max(len(folders), 1)
    for index, entry in enumerate(phases):
        folder = out / folders[index] if folders else out
        assert entry["validation_pairs"] and set(entry["validation_pairs"]) <= set(validation["pairs"])
        best = read_checkpoint(folder / "checkpoints" / "best.pt")
        assert best["iteration"] == entry["best_iteration"]
        assert best["best_validation_pairs"] == entry["best_chosen_on"] and entry["best_chosen_on"]
        assert not set(best["best_validation_pairs"]) & set(test["pairs"]), f"{folder}/checkpoints/best.pt was chosen on a test pair"
        assert not set(best["validation_pairs"]) & set(test["pairs"])
        # The next phase starts from this phase's best checkpoint, chosen on validation pairs.
        start = entry["started_from"]
        if index == 0:
            assert (start is None) == first_phase
            assert first_phase or not set(start["chosen_on"]) & set(test["pairs"])
        else:
            assert start["checkpoint"] == f"{folders[index - 1]}/checkpoints/best.pt"
            assert start["chosen_on"] == phases[index - 1]["best_chosen_on"]
            assert best["started_from"]["chosen_on"] == start["chosen_on"]
            assert not set(start["chosen_on"]) & set(test["pairs"])
    final = read_checkpoint(out / "checkpoints" / "best.pt")
    assert final["best_validation_pairs"] == selection["best_checkpoint"]["chosen_on"] == phases[-1]["best_chosen_on"]
    return selection


def test_a_single_step_is_chosen_on_the_validation_pairs_only(shards, tiny_config, tmp_path):
    run(tiny_config("train.max_iters=2", f"data.source={shards}", RANDOM_LLM, out=tmp_path / "run"))
    selection = check_apart_from_test(tmp_path / "run", [])
    stored = ShardSet(shards)
    # What validation read is the folder's validation list (its first data.num_val_pairs), the test list its test pairs.
    assert selection["validation"]["pairs"] == _ids(stored.pairs("val")[:2]) == ["val-0->val-1", "val-1->val-2"]
    assert selection["test"]["pairs"] == _ids(stored.pairs("test")) == ["test-0->test-1", "test-1->test-2"]
    assert selection["training"]["subjects"] == ["train-0", "train-1", "train-2"]
    assert selection["phases"][0]["phase"] == "step1"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_pairs"] == len(selection["validation"]["pairs"])


def test_cascade_steps_start_from_checkpoints_chosen_on_validation_pairs(shards, tiny_config, tmp_path):
    out = tmp_path / "cascade"
    run(tiny_config("model.steps=2", "train.step_iters=[2, 2]", f"data.source={shards}", RANDOM_LLM, out=out))
    selection = check_apart_from_test(out, ["step1", "step2"])
    assert [entry["phase"] for entry in selection["phases"]] == ["step1", "step2"]
    check_apart_from_test(out / "step1", [])  # each phase's own record too
    check_apart_from_test(out / "step2", [], first_phase=False)


def test_lapirn_levels_start_from_checkpoints_chosen_on_validation_pairs(shards, tmp_path):
    out = tmp_path / "lapirn"
    config = load_config("cpu-lapirn", [*TINY_LAPIRN, f"data.source={shards}", "train.step_iters=[1, 1, 1, 1, 1]", f"train.out={out}"])
    run(config)
    folders = ["level1", "level2-warmup", "level2", "level3-warmup", "level3"]
    selection = check_apart_from_test(out, folders)
    assert [entry["phase"] for entry in selection["phases"]] == folders
    assert selection["validation"]["pairs"] == ["val-0->val-1", "val-1->val-2"]


def test_a_run_validated_on_the_test_pairs_fails_the_check(shards, tiny_config, tmp_path, monkeypatch):
    """The check above is not vacuous: wire validation to the test pairs and it fails."""
    import llamareg.training.schedule as schedule
    from llamareg.data.factory import shard_pairs

    def leaking(config):
        train, _ = build(config)
        return train, shard_pairs(ShardSet(config.data.source), "test")

    build = schedule.build_pair_datasets
    monkeypatch.setattr(schedule, "build_pair_datasets", leaking)
    run(tiny_config("train.max_iters=1", f"data.source={shards}", RANDOM_LLM, out=tmp_path / "leak"))
    selection = json.loads((tmp_path / "leak" / SELECTION_FILE).read_text())
    assert selection["validation"]["pairs"] == ["test-0->test-1", "test-1->test-2"]  # recorded as read, not as configured
    assert read_checkpoint(tmp_path / "leak" / "checkpoints" / "best.pt")["best_validation_pairs"] == selection["validation"]["pairs"]
    with pytest.raises(AssertionError, match="a validation pair is a test pair"):
        check_apart_from_test(tmp_path / "leak", [])


def test_synthetic_pairs_are_recorded_by_seed_and_tested_on_the_dev_test(tiny_config, tmp_path):
    run(tiny_config("train.max_iters=1", RANDOM_LLM, out=tmp_path / "synth"))
    selection = check_apart_from_test(tmp_path / "synth", [])
    # Pair i of the validation seed stream is the pair of seeded_generator("synth-val", data.seed, i).
    assert selection["validation"]["pairs"] == ["synth-val-0-000000", "synth-val-0-000001"]
    assert selection["validation"]["seed_stream"] == ["synth-val", 0]
    assert selection["training"]["seed_stream"] == ["synth-train-0", 0]
    assert selection["test"]["seed_stream"] == ["devtest", 0] and selection["test"]["pairs"][0] == "devtest-000->devtest-001"


def test_embedded_subjects_come_from_seed_streams_apart_from_the_dev_test(tiny_config):
    roles = data_roles(tiny_config("data.source=template", "data.seed=3"))
    assert roles["training"]["seed_stream"] == ["mni152", 3, "train"] and roles["validation"]["seed_stream"] == ["mni152", 3, "val"]
    assert roles["training"]["subjects"] == ["mni152-train-000", "mni152-train-001", "mni152-train-002", "mni152-train-003"]
    assert roles["test"]["seed_stream"] == ["devtest", 0] and len(roles["test"]["pairs"]) == 16
    assert not set(roles["training"]["subjects"]) & set(roles["test"]["subjects"])


def test_a_shard_folder_without_test_pairs_records_none(tmp_path, tiny_config):
    writer = ShardSetWriter(tmp_path / "shards")
    for key, split in [("a", "train"), ("b", "train"), ("c", "val"), ("d", "val")]:
        writer.add(
            key,
            split,
            np.zeros((32, 32, 32), np.float32),
            np.zeros((32, 32, 32), np.int64),
            np.eye(4),
            {"image": tmp_path / f"{key}.nii.gz", "labels": tmp_path / f"{key}_labels.nii.gz"},
        )
    writer.finish(
        [
            {
                "moving": tmp_path / "c.nii.gz",
                "fixed": tmp_path / "d.nii.gz",
                "moving_labels": tmp_path / "c_labels.nii.gz",
                "fixed_labels": tmp_path / "d_labels.nii.gz",
            }
        ],
        None,
        {"layout": "folder"},
    )
    roles = data_roles(tiny_config(f"data.source={tmp_path / 'shards'}"))
    assert roles["test"]["pairs"] == [] and "without a test split" in roles["test"]["what"]
    assert roles["training"]["subjects"] == ["a", "b"]
