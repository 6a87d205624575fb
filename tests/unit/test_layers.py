"""The dependency directions follow the folders: a pure core under a thin shell.

The rules go by folder, read from the source (imports followed through the package), so a
module added to a folder is guarded the moment it exists and a violation fails here before
anyone has to notice it in review:
- ``api/``, ``core/`` and ``settings.py`` never reach kopf, the Kubernetes client, aiohttp,
  Prometheus, asyncio, the shell or the client, and never read the clock;
- ``client/`` (the user's machine) never reaches the shell;
- the shell never reaches the client;
- ``inpod/`` (programs run by the trainer image's Python) imports the standard library only;
- nothing in the operator reaches the local cluster harness or the tests.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "tfjob_operator"
ROOT = "tfjob_operator"

IO = {"kopf", "kubernetes", "aiohttp", "prometheus_client", "asyncio"}
SHELL = {f"{ROOT}.shell", f"{ROOT}.__main__"}
CLIENT = {f"{ROOT}.client"}
HARNESS = {"tfjob_localcluster", "tfjob_bench", "tests"}
# The clock, randomness and sleeping: time is an argument of the core, never read in it.
CLOCK_MODULES = {"time", "random", "secrets"}
CLOCK_CALLS = {"now", "utcnow", "today", "monotonic", "perf_counter", "sleep"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_in(*places: str) -> list[str]:
    """Every module under these folders (or module files) of the package, as found on disk."""
    found: list[str] = []
    for place in places:
        target = PACKAGE / place
        paths = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        found += [_module_name(p) for p in paths]
    return found


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
                if base.startswith(ROOT) and _source(f"{base}.{alias.name}").exists()
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
            if imported.startswith(f"{ROOT}.") and _source(imported).exists():
                todo.append(imported)
    return seen


def reaches(imports: set[str], targets: set[str]) -> set[str]:
    return {i for i in imports for t in targets if i == t or i.startswith(f"{t}.")}


def clock_reads(module: str) -> list[str]:
    """Where ``module`` itself reads the clock, sleeps or draws random numbers."""
    tree = ast.parse(_source(module).read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [f"import {name}" for name in names if name.split(".")[0] in CLOCK_MODULES]
    found += [
        f"{ast.unparse(node.func)}() at line {node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    ]
    return found


PURE = modules_in("api", "core", "settings")


@pytest.mark.parametrize("module", PURE)
def test_the_pure_folders_never_reach_io_the_shell_or_the_client(module: str) -> None:
    assert reaches(all_imports(module), IO | SHELL | CLIENT | HARNESS) == set()


@pytest.mark.parametrize("module", PURE)
def test_the_pure_folders_never_read_the_clock(module: str) -> None:
    assert clock_reads(module) == []


@pytest.mark.parametrize("module", modules_in("client"))
def test_the_client_never_reaches_the_shell(module: str) -> None:
    assert reaches(all_imports(module), SHELL | HARNESS) == set()


@pytest.mark.parametrize("module", modules_in("shell"))
def test_the_shell_never_reaches_the_client(module: str) -> None:
    assert reaches(all_imports(module), CLIENT | HARNESS) == set()


@pytest.mark.parametrize("module", modules_in("inpod"))
def test_in_pod_programs_import_the_standard_library_only(module: str) -> None:
    imported = {name.split(".")[0] for name in direct_imports(module)}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == set()


def test_every_module_is_in_a_folder_that_has_rules() -> None:
    """The package root holds only the entry point and the settings; everything else is in a
    folder the rules above name."""
    ruled = {"api", "core", "shell", "client", "inpod"}
    loose = {
        p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem not in {"__init__", "__main__", "settings"})
        or (p.is_dir() and p.name not in ruled and p.name != "__pycache__")
    }
    assert loose == set()


def test_the_status_logic_does_not_import_the_pod_builder() -> None:
    assert reaches(all_imports(f"{ROOT}.core.status"), {f"{ROOT}.core.builders"}) == set()


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
    kopf_handlers = [
        node
        for node in tree.body
        if isinstance(node, ast.AsyncFunctionDef)
        and any("kopf.on" in ast.unparse(d) for d in node.decorator_list)
    ]
    assert kopf_handlers
    for handler in kopf_handlers:
        assert "memo" in {a.arg for a in handler.args.args + handler.args.kwonlyargs}


def test_the_checker_sees_a_violation() -> None:
    """The rules are not vacuous: the shell does reach kopf and the client library, the
    folders are found on disk, and a clock read is seen."""
    assert reaches(all_imports(f"{ROOT}.shell.handlers"), {"kopf"}) == {"kopf"}
    assert "kubernetes.aio" in reaches(all_imports(f"{ROOT}.shell.controller"), {"kubernetes"})
    assert f"{ROOT}.core.decide" in PURE
    assert f"{ROOT}.api.labels" in PURE
    assert modules_in("inpod") == [f"{ROOT}.inpod", f"{ROOT}.inpod.pip_layer"]
    assert any("now()" in read for read in clock_reads(f"{ROOT}.shell.peering"))
    assert "import time" in clock_reads(f"{ROOT}.shell.controller")
