"""benchmarks/ablation.py: every variant against the pretrained frozen layers, on the same test pairs."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_variant_is_a_compare_method_with_its_own_preset():
    ablation, compare = load_script("ablation"), load_script("compare")
    presets = [compare.METHODS[variant][1] for variant in ablation.VARIANTS]
    assert presets[0] == "cpu-default" and len(set(presets)) == len(presets) == 6


@pytest.mark.slow
def test_tiny_ablation_compares_each_variant_with_the_pretrained_default(tmp_path):
    out = tmp_path / "ablation"
    ablation = load_script("ablation")
    assert ablation.main(["--out", str(out), "--tiny", "--methods", "identity", "llamareg", "llamareg-random-trained"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(row["a"], row["b"]) for row in results["comparisons"]] == [
        ("llamareg", "identity"),
        ("llamareg-random-trained", "identity"),
        ("llamareg-random-trained", "llamareg"),
    ]
    assert "LLaMA-Reg, random LLM layers, trained - LLaMA-Reg, 1 step" in (out / "table.md").read_text()

    def saved_llm_keys(variant):
        checkpoint = torch.load(out / "runs" / variant / "seed0" / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
        return [key for key in checkpoint["model"] if key.startswith("llm.")]

    assert saved_llm_keys("llamareg-random-trained") and not saved_llm_keys("llamareg")  # trained layers are stored
