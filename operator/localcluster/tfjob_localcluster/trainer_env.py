"""The Python environment the local node's pods run in: what a trainer image would carry.

Built once into a virtualenv outside the repository, keyed by its pinned requirements, so a
second run installs nothing. Pods find `python` on their PATH from its bin/ directory.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .binaries import cache_root

# The same pins as the `tensorflow` extra of the repository's pyproject.toml (a test checks).
TRAINER_REQUIREMENTS = ("tensorflow-cpu==2.21.0", "tf-keras==2.21.0")


def environment_dir(requirements: tuple[str, ...] = TRAINER_REQUIREMENTS) -> Path:
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    return cache_root().parent / "envs" / f"trainer-{digest}"


def pip(python: Path, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args], check=True, env=env
    )


def ensure_environment(
    target: Path, populate: Callable[[Path], None], describe: str, log: Callable[[str], object]
) -> Path:
    """The bin/ directory of the virtualenv ``target``, made by ``populate(python)`` if missing.

    A venv records its own path in its scripts, so it is built where it will live; the marker
    written last tells a finished build from an interrupted one, which is started over.
    """
    marker = target / ".complete"
    if marker.is_file():
        return target / "bin"
    log(f"{describe} (first time only)...")
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    populate(target / "bin" / "python")
    marker.write_text(describe + "\n")
    return target / "bin"


def ensure_trainer_env(
    requirements: tuple[str, ...] = TRAINER_REQUIREMENTS, log: Callable[[str], object] = print
) -> Path:
    """The bin/ directory of the trainer environment, built if missing."""
    return ensure_environment(
        environment_dir(requirements),
        lambda python: pip(python, "install", "--quiet", *requirements),
        f"trainer environment: {', '.join(requirements)}",
        log,
    )
