"""Start and stop the control plane's processes, and wait for them, without leaking any.

Each process runs in a session of its own (so a terminal's Ctrl-C reaches it only through us)
and is stopped by signalling its whole process group. A process started for a test session
also dies with the Python process that started it (PR_SET_PDEATHSIG), so a killed test run
leaves nothing behind. A process started for a person's long-lived cluster is detached instead
and is found again later by pid and start time, never by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_time_of(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are split safely.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass
class RunningProcess:
    """A started process: enough to find it again and stop it, even from another Python process."""

    name: str
    pid: int
    start_time: int
    log_path: Path

    def alive(self) -> bool:
        return start_time_of(self.pid) == self.start_time

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after the grace period."""
        if not self.alive():
            _reap(self.pid)
            return
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            _reap(self.pid)
            if not self.alive():
                break
            time.sleep(0.05)
        # The leader may be gone while children it forked live on: kill the group regardless.
        _signal_group(self.pid, signal.SIGKILL)
        # Reap it once the kill lands, so it leaves no zombie (which would still look alive).
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            _reap(self.pid)
            if not self.alive():
                break
            time.sleep(0.02)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "log_path": str(self.log_path),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RunningProcess:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),  # type: ignore[call-overload]
            start_time=int(data["start_time"]),  # type: ignore[call-overload]
            log_path=Path(str(data["log_path"])),
        )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def start(
    name: str,
    argv: list[str],
    log_dir: Path,
    *,
    detach: bool,
    env: dict[str, str] | None = None,
) -> RunningProcess:
    """Start ``argv`` with its output in ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,
            env=env,
        )
    started = start_time_of(popen.pid)
    if started is None:
        popen.wait()
        raise RuntimeError(f"{name} exited at once (code {popen.returncode}); see {log_path}")
    # Popen would otherwise warn about a child it never waited for; we reap it ourselves.
    popen.returncode = 0
    return RunningProcess(name, popen.pid, started, log_path)


class StartupError(RuntimeError):
    pass


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: RunningProcess | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``ready`` until it is true; fail fast if ``process`` died meanwhile."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if ready():
                return
        except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = error
        if process is not None and not process.alive():
            raise StartupError(
                f"{process.name} exited while waiting for {what}:\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            tail = f"\n{process.log_tail()}" if process else ""
            raise StartupError(f"timed out after {timeout:.0f} s waiting for {what}{detail}{tail}")
        time.sleep(interval)
