"""One service skeleton (docs/development.md, "How the code is laid out"): each of these services and the gateway
has its app factory, thin routes, dependency aliases and models in files of their own, and a route module defines
neither models nor dependencies (they live in schemas.py and deps.py, where the next route finds them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# The data and execution services take the same shape in their own change (issue 11).
PACKAGES = {
    "services/backtest": ["api.py", "optimize_api.py"],
    "services/risk": ["api.py"],
    "services/strategy": ["api.py", "instances_api.py"],
    "gateway": ["api.py"],
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_package_has_the_skeletons_files(package: str) -> None:
    missing = [name for name in ("app.py", "api.py", "deps.py", "schemas.py") if not (ROOT / package / name).is_file()]
    assert missing == []


def _is_annotated(value: ast.expr) -> bool:
    return isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) and value.value.id == "Annotated"


def _defined_in(path: Path) -> list[str]:
    """The models (classes) and dependency aliases (`X = Annotated[...]`) a module defines at its top level."""
    found: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            found.append(f"class {node.name}")
        elif isinstance(node, ast.Assign) and _is_annotated(node.value):
            found.extend(f"alias {t.id}" for t in node.targets if isinstance(t, ast.Name))
    return found


@pytest.mark.parametrize(("package", "routes"), [(p, r) for p, rs in sorted(PACKAGES.items()) for r in rs])
def test_a_route_module_defines_no_models_and_no_dependency_aliases(package: str, routes: str) -> None:
    assert _defined_in(ROOT / package / routes) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_dependency_aliases_are_in_deps(package: str) -> None:
    aliases = [name for name in _defined_in(ROOT / package / "deps.py") if name.startswith("alias ")]
    assert aliases != []
