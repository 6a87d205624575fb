"""Debian packages the local cluster needs on the machine itself (container tools, MPI, sshd).

Run as root, a missing package is installed with apt-get; run as anyone else, the command
stops at once, naming the packages to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping


class MissingPackages(RuntimeError):
    """The machine lacks Debian packages and this process may not install them."""


def missing(commands: Mapping[str, str]) -> list[str]:
    """The packages (values) whose command (key, a name on PATH or an absolute path) is absent."""
    absent = []
    for command, package in commands.items():
        found = os.path.exists(command) if command.startswith("/") else shutil.which(command)
        if not found and package not in absent:
            absent.append(package)
    return absent


def ensure(commands: Mapping[str, str], why: str) -> None:
    """Install the packages providing ``commands`` unless each is there already."""
    absent = missing(commands)
    if not absent:
        return
    if os.geteuid() != 0:
        raise MissingPackages(
            f"{why} needs the Debian packages {' '.join(absent)}; install them with\n"
            f"  sudo apt-get install --no-install-recommends {' '.join(absent)}\n"
            "(run as root, this command installs them itself)"
        )
    print(f"installing Debian packages for {why}: {' '.join(absent)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *absent]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    still = missing(commands)
    if still:
        raise MissingPackages(f"apt-get installed {' '.join(absent)}, yet {still} are missing")
