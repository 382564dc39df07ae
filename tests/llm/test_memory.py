"""Loading one layer of a multi-layer checkpoint reads only that layer (peak RSS of a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llamareg.llm import LlamaSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = LlamaSpec(
    hidden_size=1024, intermediate_size=2816, num_attention_heads=8, num_key_value_heads=8, rms_norm_eps=1e-5, num_hidden_layers=10
)

# Peak resident memory growth of a process that loads the given layers, in bytes.
PROBE = r"""
import json, sys
from llamareg.llm import load_llama_layers

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key))

before = status("VmRSS:")
loaded = load_llama_layers(sys.argv[1], json.loads(sys.argv[2]))
print(json.dumps({"growth": status("VmHWM:") - before, "layers": len(loaded.layers)}))
"""


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory) -> Path:
    """A ten-layer float32 Hugging Face checkpoint of ~490 MiB in one safetensors file."""
    folder = tmp_path_factory.mktemp("hf_ten_layers")
    state = {"model.norm.weight": torch.ones(SPEC.hidden_size)}
    for index in range(SPEC.num_hidden_layers):
        for name, shape in SPEC.layer_parameter_shapes().items():
            state[f"model.layers.{index}.{name}"] = torch.full(shape, 0.01 * (index + 1))
    save_file(state, folder / "model.safetensors")
    config = {
        "model_type": "llama",
        "hidden_size": SPEC.hidden_size,
        "intermediate_size": SPEC.intermediate_size,
        "num_attention_heads": SPEC.num_attention_heads,
        "num_key_value_heads": SPEC.num_key_value_heads,
        "num_hidden_layers": SPEC.num_hidden_layers,
        "rms_norm_eps": SPEC.rms_norm_eps,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def peak_growth(folder: Path, layers: list[int]) -> int:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder), json.dumps(layers)], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["layers"] == len(layers)
    return report["growth"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from Linux /proc")
def test_one_layer_costs_about_one_layer_of_memory(big_checkpoint):
    checkpoint_bytes = (big_checkpoint / "model.safetensors").stat().st_size
    layer_bytes = 4 * sum(torch.Size(s).numel() for s in SPEC.layer_parameter_shapes().values())
    one_layer = peak_growth(big_checkpoint, [-1])
    # The probe does see a full read: loading every layer grows by about the whole checkpoint.
    all_layers = peak_growth(big_checkpoint, list(range(SPEC.num_hidden_layers)))
    assert all_layers > 0.8 * checkpoint_bytes
    assert one_layer < 0.25 * checkpoint_bytes, (one_layer, checkpoint_bytes)
    assert one_layer < 2.5 * layer_bytes, (one_layer, layer_bytes)
