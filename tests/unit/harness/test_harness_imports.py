"""The harness's modules import each other in one direction (no circle, not even one hidden in
a function), and the benchmark, its own distribution, is never imported by the harness."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(20)

TOOLS = Path(__file__).resolve().parents[3] / "tools"
HARNESS = TOOLS / "localcluster" / "tfjob_localcluster"


def imports_of(path: Path, package: str) -> set[str]:
    """Every module of ``package`` that ``path`` imports, at module level or in a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = f"{package}.{base}" if base else package
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith(f"{package}.") and _exists(n))
    return found


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (HARNESS / relative).with_suffix(".py").exists()


def test_the_harness_has_no_import_circle() -> None:
    graph = {
        f"tfjob_localcluster.{path.stem}": imports_of(path, "tfjob_localcluster")
        for path in HARNESS.glob("*.py")
    }
    assert graph["tfjob_localcluster.cluster"] >= {"tfjob_localcluster.realnode"}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a circle


def test_the_harness_never_imports_the_benchmark() -> None:
    for path in HARNESS.rglob("*.py"):
        assert "tfjob_bench" not in path.read_text(), path
