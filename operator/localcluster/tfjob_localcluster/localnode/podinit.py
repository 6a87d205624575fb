"""The first thing that runs inside a pod's namespaces: mount its volumes, take its hostname,
then become the container's command, with exactly the container's environment.

Run as `ip netns exec <netns> unshare --uts -- python -m tfjob_localcluster.localnode.podinit
SPEC.json`: `ip netns exec` gives it the pod's network and a private mount namespace (with the
pod's hosts file over /etc/hosts), `unshare --uts` a hostname of its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _bind(source: str, target: str, *, read_only: bool, is_file: bool) -> None:
    destination = Path(target)
    if is_file:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if not destination.exists():
            destination.touch()
    else:
        destination.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", source, target], check=True)
    if read_only:
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    for mount in spec["mounts"]:
        _bind(mount["source"], mount["target"], read_only=mount["readOnly"], is_file=mount["file"])
    socket.sethostname(spec["hostname"])
    os.chdir(spec["workingDir"])
    command = spec["argv"]
    try:
        os.execvpe(command[0], command, spec["env"])  # noqa: S606 - becoming the container
    except OSError as error:
        print(f"podinit: cannot run {command[0]!r}: {error}", file=sys.stderr)
        return 127 if isinstance(error, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv))
