"""Config: presets, YAML files, overrides and the errors for bad keys and values."""

import pytest

from llamareg.config import load_config, preset_names


def test_presets_resolve():
    assert {"cpu-default", "paper-knee-3090"} <= set(preset_names())
    default = load_config("cpu-default")
    assert default.llm.source == "smollm2-135m"
    assert default.data.shape == [32, 32, 32] and default.data.source == "synth"
    paper = load_config("paper-knee-3090")
    assert paper.data.shape == [160, 160, 96]
    assert paper.model.base_channels == 16
    assert (paper.llm.layers, paper.llm.calls, paper.llm.hidden_size) == ([31], 2, 4096)
    assert (paper.train.reg_weight, paper.train.lr, paper.train.batch_size, paper.train.precision) == (0.04, 1e-4, 1, "fp16")
    assert paper.data.shard_layout == "oai"


def test_the_paper_s_brain_presets_follow_the_paper():
    brain = load_config("paper-brain-oasis")
    assert (brain.data.shape, brain.data.shard_layout, brain.train.reg_weight) == ([112, 160, 128], "learn2reg", 0.02)
    assert (brain.train.max_iters, brain.train.lr, brain.model.base_channels, brain.llm.layers) == (40000, 1e-4, 16, [31])
    cascade = load_config("paper-brain-oasis-cascade")
    assert (cascade.model.steps, cascade.train.schedule, cascade.train.step_iters) == (3, "step-by-step", [40000, 20000, 20000])
    assert cascade.data.shape == [112, 160, 128] and cascade.train.reg_weight == 0.02


def test_overrides_are_parsed_as_yaml_and_typed():
    config = load_config("cpu-default", ["train.max_iters=7", "train.lr=1e-3", "llm.layers=[-2, -1]", "model.diffeomorphic=true"])
    assert config.train.max_iters == 7
    assert config.train.lr == pytest.approx(1e-3)
    assert config.llm.layers == [-2, -1]
    assert config.model.diffeomorphic is True


def test_yaml_file_extends_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: cpu-default\nname: mine\ntrain:\n  max_iters: 3\n")
    config = load_config(str(path))
    assert (config.name, config.train.max_iters, config.model.base_channels) == ("mine", 3, 8)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.max_iter=5", "unknown config key 'train.max_iter'"),
        ("trainer.lr=1", "unknown config key 'trainer'"),
        ("train.max_iters=abc", "'train.max_iters' must be of type int"),
        ("data.shape=[64, 80, 60]", "divisible by 16"),
        ("model.flow_combination=multiply", "flow_combination"),
        ("train.max_iters", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        load_config("cpu-default", [override])


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(str(tmp_path / "missing.yaml"))


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  base_chanels: 4\n")
    with pytest.raises(ValueError, match="unknown config key 'model.base_chanels'"):
        load_config(str(path))
