"""Run the operator as its own process against a local cluster, the way a Deployment would."""

from __future__ import annotations

import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import processes


@dataclass
class OperatorProcess:
    """`tfjob-operator run` against ``kubeconfig``; ready once its liveness endpoint answers."""

    kubeconfig: Path
    log_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    detach: bool = False
    process: processes.RunningProcess | None = None
    port: int = 0
    starts: int = 0
    log_paths: list[Path] = field(default_factory=list)

    def start(self, timeout: float = 60) -> processes.RunningProcess:
        if self.process is not None and self.process.alive():
            return self.process
        self.port = processes.free_port()
        self.starts += 1
        argv = [
            sys.executable,
            "-m",
            "tfjob_operator",
            "run",
            f"--kubeconfig={self.kubeconfig}",
            f"--liveness=http://127.0.0.1:{self.port}/healthz",
            *self.extra_args,
        ]
        self.process = processes.start(
            f"tfjob-operator-{self.starts}" if self.starts > 1 else "tfjob-operator",
            argv,
            self.log_dir,
            detach=self.detach,
            env={**os.environ, **self.env},
        )
        self.log_paths.append(self.process.log_path)
        processes.wait_until(
            self._healthy, timeout=timeout, what="the operator's liveness", process=self.process
        )
        return self.process

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace_seconds=15)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        """Everything every run of it printed."""
        return "".join(path.read_text(errors="replace") for path in self.log_paths)
