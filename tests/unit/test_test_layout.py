"""The tests' own house: shared helpers live in tests/support, and no test module imports
another (a factory a second file needs moves to support)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(20)

TESTS = Path(__file__).resolve().parents[1]
PACKAGE = TESTS.parent / "operator" / "tfjob_operator"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_test_modules_import_support_never_each_other() -> None:
    offenders = {
        str(path.relative_to(TESTS)): sorted(
            m
            for m in imported_modules(path)
            if m.startswith(".") or (m.startswith("tests.") and not m.startswith("tests.support"))
        )
        for path in TESTS.rglob("*.py")
        if "support" not in path.relative_to(TESTS).parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_support_imports_no_test_module() -> None:
    for path in (TESTS / "support").glob("*.py"):
        assert not {
            m for m in imported_modules(path) if m.startswith("tests.") and "support" not in m
        }, path


def test_unit_tests_mirror_the_packages_folders() -> None:
    """Each of the operator's folders has its unit tests in a folder of the same name."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= {p.name for p in (TESTS / "unit").iterdir() if p.is_dir()}
