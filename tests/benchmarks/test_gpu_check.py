"""benchmarks/gpu_check.py at its --tiny size on the CPU: every row written with finite figures, also where
nibabel, mlflow, webdataset, gguf, deepspeed, peft and matplotlib cannot be imported, and a clear error
without a GPU."""

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
RESULTS = REPO / "benchmarks" / "results" / "gpu_check.md"
# The packages gpu_check.py must not need: it runs where only torch, transformers, safetensors, scipy, pyyaml
# and tqdm are installed.
BLOCKED = ("nibabel", "mlflow", "webdataset", "gguf", "deepspeed", "peft", "matplotlib")
BLOCKER = f"""
import runpy, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked by the test")
sys.meta_path.insert(0, Blocker())
sys.argv = [{str(SCRIPT)!r}, *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
TRAINING_CASES = ("one step", "step 3, step by step", "3 steps, joint")
DEEPSPEED_CASES = ("ZeRO-2 fp16", "ZeRO-2 bf16")


def run(*args, blocked=False):
    command = [sys.executable, "-c", BLOCKER, *args] if blocked else [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def table_row(text, case):
    """The cells of the Markdown table row whose first cell is ``case``."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {case} |")]
    assert len(rows) == 1, f"no single row '{case}' in:\n{text}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def importable(package):
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def finite(cell):
    value = float(cell.replace(",", ""))
    assert math.isfinite(value), cell
    return value


def check_training_and_inference(text):
    for case in TRAINING_CASES:
        _, trainable, seconds, memory, reserved, paper, loss = table_row(text, case)
        assert finite(trainable) > 0 and finite(seconds) > 0 and finite(memory) > 0 and reserved == "n/a"
        finite(loss)
    assert [table_row(text, case)[5] for case in TRAINING_CASES] == ["7632", "8384", "14712"]
    _, milliseconds, paper, _ = table_row(text, "inference, 3 steps")
    assert finite(milliseconds) > 0 and paper == "241"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_without_a_gpu_it_asks_for_one_or_tiny_in_one_line(tmp_path):
    process = run("--out", str(tmp_path / "gpu_check.md"))
    assert process.returncode != 0
    assert process.stderr.strip().count("\n") == 0 and "GPU" in process.stderr and "--tiny" in process.stderr
    assert not (tmp_path / "gpu_check.md").exists()


def test_tiny_refuses_to_overwrite_the_gpu_results():
    before = RESULTS.read_bytes() if RESULTS.exists() else None
    process = run("--tiny", "--out", str(RESULTS))
    assert process.returncode == 2 and "holds GPU results" in process.stderr
    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == before


@pytest.mark.slow  # DeepSpeed's first CPU run on a machine also compiles its shared-memory op (shared with tests/distributed)
def test_tiny_run_writes_every_row_with_finite_figures(tmp_path):
    out = tmp_path / "nested" / "gpu_check.md"
    process = run("--tiny", "--out", str(out))
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    text = out.read_text()
    assert "tiny CPU smoke run" in text and f"--tiny --out {out}" in text and "torch " in text
    check_training_and_inference(text)
    if not importable("deepspeed"):
        assert "DeepSpeed rows skipped: deepspeed does not import" in text
        return
    for case in DEEPSPEED_CASES:
        cells = table_row(text, case)
        _, config, precision, iterations, finite_losses, first, last, scale_start, scale_end, skipped, seconds, memory = cells
        assert config.startswith("ds_configs/zero2") and precision in ("bf16", "fp32")  # no fp16 on a CPU
        assert iterations == "2" and finite_losses == "yes" and skipped == "0"
        for cell in (first, last, seconds, memory) + tuple(c for c in (scale_start, scale_end) if c != "n/a"):
            finite(cell)


def test_tiny_run_needs_none_of_the_optional_packages(tmp_path):
    out = tmp_path / "gpu_check.md"
    process = run("--tiny", "--out", str(out), blocked=True)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    text = out.read_text()
    check_training_and_inference(text)
    assert re.search(r"DeepSpeed rows skipped: deepspeed does not import \(ImportError: deepspeed is blocked", text)
    assert not any(line.startswith(f"| {case} |") for case in DEEPSPEED_CASES for line in text.splitlines())
