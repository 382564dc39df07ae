"""The baseline presets (issue 7): configs, models built by ``build_model`` for two shapes, config checks,
and the comparison benchmark's table writer and evaluation pairs."""

import importlib.util
from pathlib import Path

import pytest
import torch

from llamareg.baselines import CPU_SCALING, SCALE_WEIGHTS
from llamareg.config import load_config, preset_names
from llamareg.models import build_model, check_llm_source
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
        assert (config.train.lr, config.train.reg_weight, config.train.similarity) == (
            default.train.lr,
            default.train.reg_weight,
            default.train.similarity,
        )
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
        (["model.steps=3"], "model.steps"),
        (["model.architecture=unet"], "model.architecture must be one of"),
        (["model.sizes=[1, 2]"], "must be a mapping"),
    ],
)
def test_bad_baseline_configs_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("cpu-voxelmorph", overrides)


def test_a_size_the_baseline_does_not_take_is_named_when_the_model_is_built():
    config = load_config("cpu-voxelmorph", ["model.sizes={base_channels: 4}"])
    with pytest.raises(ValueError, match=r"voxelmorph has no size\(s\) \['base_channels'\]; it accepts"):
        build_model(config)


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
    config = load_config(
        "cpu-lapirn",
        ["train.schedule=step-by-step", "train.step_iters=[]", "model.sizes.active_levels=2", "train.scale_weights=[0.0, 1.0]"],
    )
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
