"""The package's layers: the ground floor imports nothing above it (deepali's rule).

Every import statement (at module level or inside a function) of the modules in ``networks/``,
``spatial/`` and ``config.py`` is read from the source; none may name a package above them. ``checks.py``,
below them all, imports nothing of llamareg (nor torch).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llamareg"
GROUND_FLOOR = [*sorted((PACKAGE / "networks").glob("*.py")), *sorted((PACKAGE / "spatial").glob("*.py")), PACKAGE / "config.py"]
ABOVE = (
    "llamareg.baselines",
    "llamareg.training",
    "llamareg.inference",
    "llamareg.evaluation",
    "llamareg.models",
    "llamareg.commands",
    "llamareg.data",
)


def imported_modules(path: Path) -> list[str]:
    """The absolute module names a source file imports, anywhere in it."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", GROUND_FLOOR, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_ground_floor_modules_import_nothing_above_them(path):
    offending = sorted({name for name in imported_modules(path) if name.startswith(ABOVE)})
    assert not offending, f"{path.relative_to(PACKAGE)} imports {offending}"


def test_checks_module_imports_nothing_of_the_package():
    imported = imported_modules(PACKAGE / "checks.py")
    assert not [name for name in imported if name.startswith(("llamareg", "torch"))], imported


def test_the_walk_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("def build():\n    from llamareg.baselines import build_baseline\n")
    assert "llamareg.baselines" in imported_modules(source)
