"""The dependency directions follow the layers: a pure core under a thin shell.

Read from the source (imports, followed through the package), so a violation fails here before
anyone has to notice it in review.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(10)

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "tfjob_operator"
# The core: functions of their inputs, unit-tested without a cluster.
PURE = [
    "tfjob_operator.api.v1alpha1",
    "tfjob_operator.api.crd",
    "tfjob_operator.core.admission",
    "tfjob_operator.core.builders",
    "tfjob_operator.core.decide",
    "tfjob_operator.core.estimator",
    "tfjob_operator.core.events",
    "tfjob_operator.core.mpi",
    "tfjob_operator.settings",
    "tfjob_operator.core.status",
    "tfjob_operator.core.topology",
]
# The shell the core must never reach into.
SHELL = {
    "kopf",
    "kubernetes",
    "aiohttp",
    "tfjob_operator.shell.kube",
    "tfjob_operator.shell.controller",
    "tfjob_operator.shell.handlers",
    "tfjob_operator.shell.informer",
    "tfjob_operator.shell.workqueue",
}


def _source(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    candidate = PACKAGE / relative.with_suffix(".py")
    return candidate if candidate.exists() else PACKAGE / relative / "__init__.py"


@cache
def direct_imports(module: str) -> frozenset[str]:
    """Modules ``module`` imports, absolute, with relative imports resolved."""
    path = _source(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            # `from . import metrics` imports a module, not a name.
            found.update(
                f"{base}.{alias.name}"
                for alias in node.names
                if _source(f"{base}.{alias.name}").exists() and base.startswith("tfjob_operator")
            )
    return frozenset(found)


def all_imports(module: str) -> set[str]:
    """Everything ``module`` imports, following imports inside the operator's package."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for imported in direct_imports(todo.pop()):
            if imported in seen:
                continue
            seen.add(imported)
            if imported.startswith("tfjob_operator.") and _source(imported).exists():
                todo.append(imported)
    return seen


def reaches(imports: set[str], targets: set[str]) -> set[str]:
    return {i for i in imports for t in targets if i == t or i.startswith(f"{t}.")}


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_never_import_kopf_the_client_or_the_shell(module: str) -> None:
    assert reaches(all_imports(module), SHELL) == set()


def test_the_api_server_layer_does_not_import_the_status_logic() -> None:
    assert (
        reaches(all_imports("tfjob_operator.shell.kube"), {"tfjob_operator.core.status"}) == set()
    )
    assert (
        reaches(all_imports("tfjob_operator.shell.kube"), {"tfjob_operator.core.decide"}) == set()
    )


def test_the_status_logic_does_not_import_the_pod_builder() -> None:
    assert (
        reaches(all_imports("tfjob_operator.core.status"), {"tfjob_operator.core.builders"})
        == set()
    )


def test_handlers_get_their_settings_through_kopfs_memo_not_a_module_global() -> None:
    tree = ast.parse((PACKAGE / "shell" / "handlers.py").read_text())
    module_level = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    ]
    assert [name for name in module_level if "SETTING" in name.upper()] == []
    assert "memo" in (PACKAGE / "shell" / "handlers.py").read_text()


def test_the_checker_sees_a_violation() -> None:
    """The import walk is not vacuous: the shell does reach kopf and the client."""
    assert reaches(all_imports("tfjob_operator.shell.handlers"), {"kopf"}) == {"kopf"}
    assert "kubernetes.aio" in reaches(
        all_imports("tfjob_operator.shell.controller"), {"kubernetes"}
    )
