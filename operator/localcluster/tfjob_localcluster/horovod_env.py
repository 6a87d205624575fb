"""The Python environment of Horovod pods on the local node: what the Horovod image carries.

Horovod 0.28.1 (its last release) builds against TensorFlow 2.18 at the newest, and its Keras
integration needs Keras 2 (tf_keras). The wheel is compiled once, with MPI (OpenMPI from the
system) and Gloo, and cached outside the repository; environments install it from there.
Needs cmake, g++ and libopenmpi-dev to build (`.ci/run` installs them).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .binaries import cache_root
from .trainer_env import ensure_environment, pip

HOROVOD = "horovod==0.28.1"
# The newest TensorFlow Horovod 0.28.1 compiles against, and the Keras 2 of the same release.
HOROVOD_TENSORFLOW = ("tensorflow-cpu==2.18.1", "tf-keras==2.18.0")
BUILD_TOOLS = ("setuptools==80.9.0", "wheel==0.48.0", "packaging==26.4")


def _key() -> str:
    return hashlib.sha256("\n".join((HOROVOD, *HOROVOD_TENSORFLOW)).encode()).hexdigest()[:12]


def environment_dir() -> Path:
    return cache_root().parent / "envs" / f"horovod-{_key()}"


def wheel_dir() -> Path:
    return cache_root().parent / "wheels" / f"horovod-{_key()}"


def build_wheel(python: Path, log=print) -> Path:
    """Compile Horovod once (minutes) into the wheel cache."""
    found = sorted(wheel_dir().glob("horovod-*.whl"))
    if found:
        return found[-1]
    missing = [tool for tool in ("cmake", "g++", "mpicxx") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"building Horovod needs {', '.join(missing)}: "
            "apt-get install cmake g++ libopenmpi-dev openmpi-bin"
        )
    log("horovod: compiling the wheel with MPI and Gloo (first time only, a few minutes)...")
    staging = wheel_dir().with_suffix(".partial")
    shutil.rmtree(staging, ignore_errors=True)
    env = {
        **os.environ,
        "HOROVOD_WITH_TENSORFLOW": "1",
        "HOROVOD_WITH_MPI": "1",
        "HOROVOD_WITH_GLOO": "1",
        "HOROVOD_WITHOUT_PYTORCH": "1",
        "HOROVOD_WITHOUT_MXNET": "1",
        "MAKEFLAGS": f"-j{os.cpu_count() or 2}",
    }
    pip(
        python,
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-cache-dir",
        "--wheel-dir",
        str(staging),
        HOROVOD,
        env=env,
    )
    staging.rename(wheel_dir())
    return sorted(wheel_dir().glob("horovod-*.whl"))[-1]


def ensure_horovod_env(log: Callable[[str], object] = print) -> Path:
    """The bin/ directory of the Horovod environment, built if missing."""

    def populate(python: Path) -> None:
        pip(python, "install", "--quiet", *BUILD_TOOLS, *HOROVOD_TENSORFLOW)
        wheel = build_wheel(python, log)
        pip(python, "install", "--quiet", str(wheel))  # and its small pure-Python dependencies

    return ensure_environment(
        environment_dir(),
        populate,
        f"horovod environment: {HOROVOD}, {', '.join(HOROVOD_TENSORFLOW)}",
        log,
    )
