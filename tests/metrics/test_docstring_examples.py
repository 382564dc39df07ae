from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module_name", ["llamareg.metrics.overlap", "llamareg.metrics.jacobian", "llamareg.metrics.surface"]
)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
