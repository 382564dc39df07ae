"""Every docstring example in the package runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest
import torch

import llamareg


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(llamareg.__path__, prefix="llamareg."):
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module_name", _modules_with_examples())
def test_docstring_examples_run(module_name):
    result = doctest.testmod(importlib.import_module(module_name), extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
