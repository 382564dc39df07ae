"""The baseline presets (issue 7): configs, models built by ``build_model`` for two shapes, config checks,
and the comparison benchmark's table writer and evaluation pairs."""

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llamareg.baselines import CPU_SCALING, SCALE_WEIGHTS
from llamareg.config import load_config, preset_names
from llamareg.data.shards import ShardSetWriter
from llamareg.networks.llamareg import build_model, check_llm_source
from llamareg.spatial.functional import warp

REPO = Path(__file__).resolve().parents[2]
BASELINE_PRESETS = ["cpu-voxelmorph", "cpu-lapirn", "cpu-transmorph", "cpu-transmatch"]
HAVE_VOXELMORPH = importlib.util.find_spec("voxelmorph") is not None
needs_voxelmorph = pytest.mark.skipif(not HAVE_VOXELMORPH, reason="the voxelmorph package is not installed (pip install -e .[compare])")


def test_every_baseline_has_a_cpu_preset_with_the_cpu_scaling():
    assert set(BASELINE_PRESETS) <= set(preset_names())
    for preset in BASELINE_PRESETS:
        config = load_config(preset)
        name = config.model.architecture
        assert preset == f"cpu-{name}"
        # The sizes are CPU_SCALING's (YAML lists for tuples), the loss weights SCALE_WEIGHTS'.
        assert config.model.sizes == {k: list(v) if isinstance(v, tuple) else v for k, v in CPU_SCALING[name].items()}
        assert tuple(config.train.scale_weights) == SCALE_WEIGHTS[name]
        # Trained like cpu-default: same data, loss and optimiser settings, no LLM.
        default = load_config("cpu-default")
        assert config.data == default.data
        assert (config.train.lr, config.train.reg_weight, config.train.similarity) == (default.train.lr, default.train.reg_weight, default.train.similarity)
        assert config.llm.source is None
        check_llm_source(config)  # nothing to open
    lapirn = load_config("cpu-lapirn")
    assert lapirn.train.schedule == "lapirn" and sum(lapirn.train.step_iters) == 450  # the release's schedule scaled to 450 iterations


@pytest.mark.parametrize("preset", [*BASELINE_PRESETS, pytest.param("cpu-voxelmorph-package", marks=needs_voxelmorph)])
@pytest.mark.parametrize("shape", [(48, 64, 48), (32, 48, 64)])
def test_presets_build_for_two_shapes_and_register(preset, shape):
    config = load_config(preset, [f"data.shape={list(shape)}"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    counts = model.parameter_counts()
    assert counts["trainable"] > 0 and counts["frozen"] == 0
    moving, fixed = torch.rand(1, 1, *shape), torch.rand(1, 1, *shape)
    with torch.no_grad():
        out = model(moving, fixed)
    assert len(out["flows"]) == len(config.train.scale_weights)
    assert out["full_flow"].shape == (1, 3, *shape) and torch.isfinite(out["full_flow"]).all()
    assert torch.allclose(out["warped"], warp(moving, out["full_flow"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.scale_weights=[0.25, 0.5, 1.0]"], r"needs 1 weight\(s\) for voxelmorph"),
        (["model.sizes={base_channels: 4}"], "does not take"),
        (["model.steps=3"], "model.steps"),
        (["model.architecture=unet"], "model.architecture must be one of"),
        (["model.sizes=[1, 2]"], "must be a mapping"),
    ],
)
def test_bad_baseline_configs_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("cpu-voxelmorph", overrides)


def test_lapirn_schedule_and_llamareg_keys_are_checked():
    with pytest.raises(ValueError, match="trains LapIRN's levels"):
        load_config("cpu-voxelmorph", ["train.schedule=lapirn"])
    with pytest.raises(ValueError, match="active_levels"):
        load_config("cpu-lapirn", ["model.sizes.active_levels=2"])
    with pytest.raises(ValueError, match="model.sizes is for baselines"):
        load_config("cpu-default", ["model.sizes={features: 8}"])
    with pytest.raises(ValueError, match="needs 3 weight"):
        load_config("cpu-default", ["train.scale_weights=[1.0]"])
    # LapIRN without its schedule trains the active levels together, one weight per level.
    config = load_config("cpu-lapirn", ["train.schedule=step-by-step", "train.step_iters=[]", "model.sizes.active_levels=2",
                                        "train.scale_weights=[0.0, 1.0]"])
    assert len(build_model(config)(torch.rand(1, 1, 48, 64, 48), torch.rand(1, 1, 48, 64, 48))["flows"]) == 2


@needs_voxelmorph
def test_the_voxelmorph_package_model_follows_llamareg_displacement_convention():
    import voxelmorph

    config = load_config("cpu-voxelmorph-package", ["data.shape=[32, 32, 32]"])
    model = build_model(config)
    assert isinstance(model.network, voxelmorph.nn.models.VxmPairwise)
    image = torch.rand(1, 1, 20, 24, 28)
    # A smooth field of under a voxel: the package's transformer and llamareg's warp agree away from the border
    # (they only pad differently).
    flow = torch.nn.functional.interpolate(torch.randn(1, 3, 3, 3, 3) * 0.5, size=(20, 24, 28), mode="trilinear")
    theirs = voxelmorph.nn.modules.SpatialTransformer()(image, flow)
    assert torch.allclose(theirs[..., 2:-2, 2:-2, 2:-2], warp(image, flow)[..., 2:-2, 2:-2, 2:-2], atol=1e-5)


# ----------------------------------------------------------------------------- benchmarks/compare.py
@pytest.fixture(scope="module")
def compare():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import compare
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return compare


def _records(dices, seconds):
    return [{"pair": f"a{i}->b{i}", "dice": d, "dice_identity": 0.64, "folding_pct": 0.01 * i, "sdlogj_l2r": 0.05, "hd95": 4.0 + i,
             "seconds": seconds} for i, d in enumerate(dices)]


def test_compare_writes_the_markdown_and_csv_tables(compare, tmp_path):
    results = [
        {"method": "identity", "records": _records([0.62, 0.66], 0.0), "trainable_parameters": 0, "frozen_parameters": 0},
        {"method": "ants-syn", "status": "not installed (ImportError: No module named 'ants')"},
        {"method": "lapirn", "records": _records([0.70, 0.74], 0.25), "trainable_parameters": 305520, "frozen_parameters": 0,
         "train_seconds_per_iteration": 1.5, "peak_memory_mb": 850.0, "iterations": 150},
        {"method": "llamareg", "records": _records([0.72, 0.78], 0.5), "trainable_parameters": 8_730_000,
         "frozen_parameters": 3_540_000, "train_seconds_per_iteration": 2.25, "peak_memory_mb": 1033.4, "iterations": 150},
    ]
    text = compare.write_table(results, tmp_path, "caption")
    lines = text.splitlines()
    assert lines[0] == "caption"
    assert lines[2].startswith("| Method | Dice (%) | % \\|J\\| <= 0 | SDlogJ (L2R) | HD95 (mm) | Inference s / pair | Train s / iter")
    assert lines[4] == "| Identity (no registration) | 64.00 ± 2.00 | 0.005 | 0.050 | 4.50 | 0.000 | n/a | n/a | 0 | 0 |"
    assert lines[5] == "| ANTs SyN (antspyx) | not installed (ImportError: No module named 'ants') | | | | | | | | |"
    assert lines[6] == "| LapIRN | 72.00 ± 2.00 | 0.005 | 0.050 | 4.50 | 0.250 | 1.50 | 850 | 305.5k | 0 |"
    assert lines[7] == "| LLaMA-Reg, 1 step | 75.00 ± 3.00 | 0.005 | 0.050 | 4.50 | 0.500 | 2.25 | 1033 | 8.73M | 3.54M |"
    assert (tmp_path / "table.md").read_text() == text
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert [row["method"] for row in rows] == ["identity", "ants-syn", "lapirn", "llamareg"]
    assert float(rows[3]["dice_mean"]) == pytest.approx(0.75) and float(rows[3]["dice_std"]) == pytest.approx(0.03)
    assert rows[1]["status"].startswith("not installed") and rows[1]["dice_mean"] == ""
    assert rows[2]["trainable_parameters"] == "305520" and rows[2]["train_seconds_per_iteration"] == "1.5"
    pairs = list(csv.DictReader(open(tmp_path / "pairs.csv")))
    assert len(pairs) == 6 and pairs[-1]["method"] == "llamareg" and float(pairs[-1]["dice"]) == 0.78
    figure = compare.dice_boxplot(results, tmp_path / "dice_boxplot.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_splits_the_budget_over_schedule_phases(compare):
    assert compare.split_budget(150, compare.PHASE_SHARES["llamareg-3steps"]) == [90, 30, 30]
    assert compare.split_budget(150, compare.PHASE_SHARES["lapirn"]) == [38, 3, 35, 2, 72]
    assert sum(compare.split_budget(7, compare.PHASE_SHARES["lapirn"])) == 7
    with pytest.raises(ValueError, match="fewer than"):
        compare.split_budget(3, compare.PHASE_SHARES["lapirn"])
    overrides = compare.method_overrides("lapirn", 150, Path("/tmp/x"), None)
    config = load_config("cpu-lapirn", overrides)
    assert config.train.step_iters == [38, 3, 35, 2, 72] and config.train.val_every == 72
    assert config.tracking.experiment == "compare" and config.tracking.uri == "sqlite:////tmp/x/mlflow.db"


def test_compare_scores_a_shard_folder_on_its_test_pairs(compare, tmp_path):
    writer = ShardSetWriter(tmp_path / "shards")
    keys = {"train": ["t0", "t1"], "val": ["v0", "v1"], "test": ["x0", "x1"]}
    for split, names in keys.items():
        for key in names:
            writer.add(key, split, np.zeros((16, 16, 16), np.float32), np.zeros((16, 16, 16), np.int64), np.eye(4),
                       {"image": tmp_path / f"{key}.nii.gz", "labels": None})

    def pair(moving, fixed):
        return {"moving": tmp_path / f"{moving}.nii.gz", "fixed": tmp_path / f"{fixed}.nii.gz",
                "moving_labels": tmp_path / "l.nii.gz", "fixed_labels": tmp_path / "l.nii.gz"}

    writer.finish([pair("v0", "v1")], [pair("x0", "x1"), pair("x1", "x0")], {"layout": "test"})
    config = load_config("cpu-default", [f"data.source={tmp_path / 'shards'}", "data.shape=[16,16,16]"])
    pairs = compare.evaluation_pairs(config)
    assert [(p["moving_name"], p["fixed_name"]) for p in pairs] == [("x0", "x1"), ("x1", "x0")]  # not the validation pairs
