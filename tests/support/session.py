"""What the session's fixtures hand the tests: the stash key of the session's cluster and the
command-line tools pointed at it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tfjob_localcluster.cluster import LocalCluster

# The session's cluster, once a test started it: the test marked `last` stops it, in its own
# time, rather than the teardown of whichever test happens to run last, in that test's time.
SESSION_CLUSTER = pytest.StashKey[LocalCluster]()


@dataclass
class Tool:
    """A command-line tool pointed at the local cluster."""

    executable: str
    kubeconfig: Path
    flag: str = "--kubeconfig"

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.executable, f"{self.flag}={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HOME": str(self.kubeconfig.parent)},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result
