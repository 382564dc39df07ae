"""``python launch/train.py`` as a user runs it: printing the config and refusing bad input."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def train_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "launch" / "train.py"), *args], capture_output=True, text=True, cwd=ROOT)


def test_print_config_resolves_flags_and_overrides():
    result = train_cli("--print-config", "--max-iters", "12", "--llm", "random:llama-2-7b", "--out", "runs/x", "model.base_channels=4")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["train"]["max_iters"] == 12 and printed["train"]["out"] == "runs/x"
    assert printed["llm"]["source"] == "random:llama-2-7b"
    assert printed["model"]["base_channels"] == 4
    assert printed["name"] == "cpu-default"


def test_unknown_key_is_a_one_line_error():
    result = train_cli("--print-config", "train.learning_rate=1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown config key 'train.learning_rate'" in lines[0]


def test_missing_llm_path_is_a_one_line_error(tmp_path):
    result = train_cli("--config", "paper-knee-3090", "--llm", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: LLM source")
    assert not (tmp_path / "run").exists()


def test_a_fake_gguf_and_a_bert_folder_are_one_line_errors_before_anything_is_written(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"this is not a gguf file" * 10)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(
        '{"model_type": "bert", "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12}'
    )
    for source, message in (
        (fake, f"error: {fake}: not a readable GGUF file"),
        (bert, f"error: {bert / 'config.json'}: model_type is 'bert'; only LLaMA-architecture checkpoints"),
    ):
        out = tmp_path / f"run-{source.name}"
        result = train_cli("--llm", str(source), "--out", str(out), "--max-iters", "2")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), lines
        assert not out.exists()  # no run folder, hence no MLflow store or run either


def test_a_bad_data_folder_is_a_one_line_error_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    result = train_cli("--data", str(tmp_path / "no-shards"), "--out", str(out), "--max-iters", "2")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: data.source '{tmp_path / 'no-shards'}' is neither"), lines
    assert not out.exists()
