"""Launching real multi-rank runs with the `deepspeed` launcher on the CPU (gloo)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# DeepSpeed compiles a small communication op on its first launch (about 100 s); later launches reuse it.
EXTENSIONS = REPO / ".cache" / "torch_extensions"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def launch():
    """``launch(script, *args, ranks=2)``: run ``deepspeed --num_accelerators ranks script args`` from the
    repository root; returns the CompletedProcess (output in ``.stdout``)."""

    def run(script, *args, ranks=2):
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "TORCH_EXTENSIONS_DIR": str(EXTENSIONS)}
        launcher = Path(sys.executable).parent / "deepspeed"
        command = [
            str(launcher),
            "--num_nodes",
            "1",
            "--num_accelerators",
            str(ranks),
            "--master_port",
            str(_free_port()),
            script,
            *map(str, args),
        ]
        return subprocess.run(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)

    return run
