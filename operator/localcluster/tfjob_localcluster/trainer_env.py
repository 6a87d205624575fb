"""The Python environment the local node's pods run in: what a trainer image would carry.

Built once into a virtualenv outside the repository, keyed by its pinned requirements, so a
second run installs nothing. Pods find `python` on their PATH from its bin/ directory.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from .binaries import cache_root

# The same pins as the `tensorflow` extra of the repository's pyproject.toml (a test checks).
TRAINER_REQUIREMENTS = ("tensorflow-cpu==2.21.0", "tf-keras==2.21.0")


def environment_dir(requirements: tuple[str, ...] = TRAINER_REQUIREMENTS) -> Path:
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    return cache_root().parent / "envs" / f"trainer-{digest}"


def ensure_trainer_env(requirements: tuple[str, ...] = TRAINER_REQUIREMENTS, log=print) -> Path:
    """The bin/ directory of the trainer environment, built if missing."""
    target = environment_dir(requirements)
    if (target / ".complete").is_file():
        return target / "bin"
    log(f"trainer environment: installing {', '.join(requirements)} (first time only)...")
    # A venv records its own path in its scripts, so it is built where it will live; the
    # marker written last tells a finished build from an interrupted one.
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    subprocess.run(
        [
            str(target / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *requirements,
        ],
        check=True,
    )
    (target / ".complete").write_text("\n".join(requirements) + "\n")
    return target / "bin"
