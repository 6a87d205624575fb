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
TRAINER_REQUIREMENTS = ("tensorflow-cpu==2.21.0", "tf-keras==2.21.0", "onnx==1.23.2")
# Installed without their dependencies: tf2onnx 1.16.1 (for images/trainer/tfjob_onnx.py) pins
# protobuf~=3.20, which TensorFlow 2.21 cannot use; it works with TensorFlow's protobuf 7.
TRAINER_WITHOUT_DEPENDENCIES = ("tf2onnx==1.16.1",)


def environment_dir(requirements: tuple[str, ...] = TRAINER_REQUIREMENTS) -> Path:
    pins = (*requirements, *TRAINER_WITHOUT_DEPENDENCIES)
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
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


def _populate(python: Path, requirements: tuple[str, ...]) -> None:
    pip(python, "install", "--quiet", *requirements)
    pip(python, "install", "--quiet", "--no-deps", *TRAINER_WITHOUT_DEPENDENCIES)


def ensure_trainer_env(
    requirements: tuple[str, ...] = TRAINER_REQUIREMENTS, log: Callable[[str], object] = print
) -> Path:
    """The bin/ directory of the trainer environment, built if missing."""
    return ensure_environment(
        environment_dir(requirements),
        lambda python: _populate(python, requirements),
        f"trainer environment: {', '.join((*requirements, *TRAINER_WITHOUT_DEPENDENCIES))}",
        log,
    )
