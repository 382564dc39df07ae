"""Peak memory of taking one LLaMA layer with llamareg versus loading the whole model with transformers.

Writes a sharded Hugging Face checkpoint with LLaMA-2-7B shapes (hidden 4096, FFN 11008, 32 heads,
vocabulary 32000) but only a few decoder layers, in float16, to a temporary folder. Then, each in a
fresh process, it measures the peak resident memory growth of
  (a) ``llamareg.llm.load_llama_layers(folder, [last])`` and
  (b) ``transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float16)``,
and writes both, their ratio, the machine and the versions to benchmarks/results/llm_loading.md/.json.

Run: ``PYTHONPATH=. python benchmarks/llm_loading.py [--num-layers 8]`` (about 1 minute, ~4 GB of disk).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

from llamareg.llm.formats.random_init import KNOWN_SPECS

REPO_ROOT = Path(__file__).resolve().parents[1]
VOCAB_SIZE = 32000
MIB = 2**20

# Run in a fresh interpreter: prints the resident memory before and the peak after the load (bytes).
PROBE = r"""
import json, sys, time
import torch

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key))

mode, folder = sys.argv[1], sys.argv[2]
if mode == "llamareg":
    from llamareg.llm import load_llama_layers
else:
    from transformers import AutoModelForCausalLM
before = status("VmRSS:")
start = time.perf_counter()
if mode == "llamareg":
    module = load_llama_layers(folder, [-1], dtype=torch.float16).layers
else:
    module = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float16)
seconds = time.perf_counter() - start
peak_after_load = status("VmHWM:")
# Weights still lazily memory-mapped take no RSS until read; a forward pass reads them all.
with torch.no_grad():
    parameters = sum(p.numel() for p in module.parameters() if p.sum() is not None)
print(json.dumps({"rss_before": before, "peak_after_load": peak_after_load, "peak_after_use": status("VmHWM:"),
                  "seconds": seconds, "parameters": parameters}))
"""


def write_checkpoint(folder: Path, num_layers: int) -> int:
    """Write a LLaMA-2-7B-shaped float16 checkpoint with ``num_layers`` layers, one shard per layer; return bytes."""
    spec = KNOWN_SPECS["llama-2-7b"]
    generator = torch.Generator().manual_seed(0)

    def normal(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=torch.float16).normal_(0.0, 0.02, generator=generator)

    shards = [
        {
            "model.embed_tokens.weight": normal(VOCAB_SIZE, spec.hidden_size),
            "lm_head.weight": normal(VOCAB_SIZE, spec.hidden_size),
            "model.norm.weight": torch.ones(spec.hidden_size, dtype=torch.float16),
        }
    ]
    shards += [None] * num_layers  # layer shards are generated one at a time to keep this process small
    weight_map, total = {}, 0
    for number in range(len(shards)):
        name = f"model-{number + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = shards[number] or {
            f"model.layers.{number - 1}.{key}": (torch.ones(shape, dtype=torch.float16) if len(shape) == 1 else normal(*shape))
            for key, shape in spec.layer_parameter_shapes().items()
        }
        save_file(tensors, folder / name, metadata={"format": "pt"})
        weight_map.update({key: name for key in tensors})
        total += (folder / name).stat().st_size
        shards[number] = None
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "num_hidden_layers": num_layers,
        "rms_norm_eps": spec.rms_norm_eps,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return total


def measure(mode: str, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", PROBE, mode, str(folder)], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} probe failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["growth_after_load"] = report["peak_after_load"] - report["rss_before"]
    report["growth"] = report["peak_after_use"] - report["rss_before"]
    return report


def machine() -> dict:
    with open("/proc/meminfo") as handle:
        memory_kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
    }


def write_results(results: dict, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "llm_loading.json").write_text(json.dumps(results, indent=2) + "\n")
    ours, full = results["llamareg_one_layer"], results["transformers_whole_model"]
    lines = [
        "# Loading one LLaMA layer: llamareg vs. the whole model with transformers",
        "",
        f"Date: {results['date']}. Machine: {results['machine']['processor']}, {results['machine']['cpus']} CPUs, "
        f"{results['machine']['memory_gib']} GiB RAM, {results['machine']['platform']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
        "",
        f"Checkpoint: Hugging Face safetensors, LLaMA-2-7B shapes (hidden 4096, FFN 11008, 32 heads, vocabulary "
        f"{VOCAB_SIZE}) with {results['num_layers']} decoder layers, float16, one shard per layer, "
        f"{results['checkpoint_mib']:.0f} MiB on disk (in the page cache: it was just written). "
        "Each load runs in a fresh process. Growth = peak RSS (VmHWM) minus RSS before the load, taken right "
        "after the load and again once every parameter has been read (as a forward pass does): transformers "
        "keeps float16 safetensors weights memory-mapped, so they occupy memory only when first read.",
        "",
        "| load | parameters | growth after load (MiB) | growth once weights are read (MiB) | load time (s) |",
        "|---|---:|---:|---:|---:|",
        f"| llamareg `load_llama_layers(folder, [-1], float16)` | {ours['parameters']:,} "
        f"| {ours['growth_after_load'] / MIB:.0f} | {ours['growth'] / MIB:.0f} | {ours['seconds']:.2f} |",
        f"| transformers `AutoModelForCausalLM.from_pretrained(folder, dtype=float16)` | {full['parameters']:,} "
        f"| {full['growth_after_load'] / MIB:.0f} | {full['growth'] / MIB:.0f} | {full['seconds']:.2f} |",
        "",
        f"Ratio of peak RSS growth once the weights are read, whole model / one layer: "
        f"**{results['growth_ratio']:.1f}x**. "
        f"One float16 LLaMA-2-7B decoder layer is {results['layer_mib']:.0f} MiB; with the real 32-layer model "
        f"the whole-model figure grows with the layer count while the one-layer figure does not.",
        "",
        f"Reproduce: `PYTHONPATH=. python benchmarks/llm_loading.py --num-layers {results['num_layers']}`.",
        "",
    ]
    (results_dir / "llm_loading.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-layers", type=int, default=8, help="decoder layers in the written checkpoint")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.num_layers < 2:
        parser.error("--num-layers must be at least 2 (one layer is taken out of several)")
    spec = KNOWN_SPECS["llama-2-7b"]
    with tempfile.TemporaryDirectory(prefix="llamareg_llm_bench_") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        checkpoint_bytes = write_checkpoint(folder, args.num_layers)
        print(f"wrote {checkpoint_bytes / MIB:.0f} MiB in {time.perf_counter() - start:.1f} s", flush=True)
        ours = measure("llamareg", folder)
        print(f"llamareg one layer: growth {ours['growth'] / MIB:.0f} MiB", flush=True)
        full = measure("transformers", folder)
        print(f"transformers whole model: growth {full['growth'] / MIB:.0f} MiB", flush=True)
    layer_bytes = 2 * sum(torch.Size(s).numel() for s in spec.layer_parameter_shapes().values())
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": version("transformers"),
            "safetensors": version("safetensors"),
        },
        "num_layers": args.num_layers,
        "checkpoint_mib": checkpoint_bytes / MIB,
        "layer_mib": layer_bytes / MIB,
        "llamareg_one_layer": ours,
        "transformers_whole_model": full,
        "growth_ratio": full["growth"] / ours["growth"],
    }
    write_results(results, args.results_dir)
    print((args.results_dir / "llm_loading.md").read_text())


if __name__ == "__main__":
    main()
