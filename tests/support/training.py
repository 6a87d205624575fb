"""Real training disrupted on the real node: how a worker is taken (SIGKILL as the OOM killer
does, the Eviction API as kubectl drain does, a graceful delete), a claim for the job's
checkpoints on a directory of the node, and a pod's log followed for the epochs it began."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.support.jobs import condition, wait_for_condition


def follow_until(core: k8s.CoreV1Api, namespace: str, pod: str, text: str) -> None:
    """Follow a pod's log until a line contains ``text`` (the log server streams it)."""
    stream = core.read_namespaced_pod_log(pod, namespace, follow=True, _preload_content=False)
    seen: list[str] = []
    try:
        for line in lines_of(stream):
            if text in line:
                return
            seen = [*seen[-40:], line]
    finally:
        stream.release_conn()
    raise AssertionError(f"{pod}'s log ended without {text!r}:\n{''.join(seen)}")


def lines_of(stream: Any) -> Iterator[str]:
    """A followed log, line by line: the stream's chunks may end mid-line (mpirun's do)."""
    pending = b""
    for chunk in stream.stream():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace") + "\n"
    if pending:
        yield pending.decode(errors="replace")


def kill_pod(core: k8s.CoreV1Api, namespace: str, pod: str) -> int:
    """SIGKILL the processes of a pod's containers, as the OOM killer would; return how many
    were killed. They are found by the pod's cgroup (the kubelet's cgroupfs driver names it
    pod<uid>), not by environment: sshd, a Horovod worker's main process, keeps none; the
    sandbox's pause process is left alone."""
    uid = core.read_namespaced_pod(pod, namespace).metadata.uid
    markers = (f"/pod{uid}/".encode(), f"pod{uid.replace('-', '_')}".encode())
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_bytes()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(marker in cgroups for marker in markers) and command != b"/pause\0":
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def evict(core: k8s.CoreV1Api, namespace: str, pod: str) -> None:
    """What kubectl drain does to each pod of the node: the Eviction API."""
    core.create_namespaced_pod_eviction(
        pod, namespace, k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=pod, namespace=namespace))
    )


# How a worker of a running job is taken, and how the job's Restarting condition says it.
DISRUPTIONS: dict[str, tuple[str, Callable[[k8s.CoreV1Api, str, str], object]]] = {
    "sigkill": ("exited with code 137", lambda core, ns, pod: kill_pod(core, ns, pod) >= 1),
    "evicted": ("was evicted", evict),
    "deleted": (
        "was deleted by someone other than the operator",
        lambda core, namespace, pod: core.delete_namespaced_pod(pod, namespace),
    ),
}


@contextmanager
def checkpoint_claim(core: k8s.CoreV1Api, namespace: str) -> Iterator[tuple[str, Path]]:
    """A claim for a job's checkpoints, bound to a directory of the real node (a hostPath
    volume: the workers share the node), writable by the trainer's user."""
    volume = f"tfjob-checkpoint-{secrets.token_hex(4)}"
    directory = Path("/var/tmp") / volume
    directory.mkdir()
    directory.chmod(0o777)
    core.create_persistent_volume(
        {
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(directory), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": "checkpoints"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "checkpoints"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    try:
        yield "checkpoints", directory
    finally:
        core.delete_persistent_volume(volume)
        shutil.rmtree(directory, ignore_errors=True)


class EpochsSeen:
    """Follows a pod's log in the background until its container ends: the epochs it began."""

    def __init__(self, core: k8s.CoreV1Api, namespace: str, pod: str) -> None:
        self.epochs: list[int] = []
        self.lines: list[str] = []
        self._thread = threading.Thread(
            target=self._follow, args=(core, namespace, pod), daemon=True
        )
        self._thread.start()

    def _follow(self, core: k8s.CoreV1Api, namespace: str, pod: str) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                stream = core.read_namespaced_pod_log(
                    pod, namespace, follow=True, _preload_content=False
                )
                break
            except k8s.exceptions.ApiException:  # its container has not started yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            for line in lines_of(stream):
                self.lines.append(line)
                self.epochs += [int(n) for n in EPOCH.findall(line)]
        finally:
            stream.release_conn()

    def training(self, timeout: float) -> None:
        """Wait for the first epoch to begin."""
        deadline = time.monotonic() + timeout
        while not self.epochs and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.epochs, "".join(self.lines[-30:])

    def ended(self, timeout: float) -> list[int]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the log did not end"
        return self.epochs


# Keras' progress lines, and what the trainers say when they resume from a checkpoint.
EPOCH = re.compile(r"Epoch (\d+)/\d+")
RESTORED = re.compile(
    r"restored the training as it was after epoch (?P<epoch>\d+)(, step (?P<step>\d+))?"
)


def restarted_for(
    api_client: k8s.ApiClient, namespace: str, job: str, how: str, timeout: float
) -> dict:
    """Wait for the job to restart as attempt 2 for worker 1, taken ``how``: the Restarting
    condition names it, and a kill spends the retry budget where an eviction or a delete
    counts a disruption."""
    says, _ = DISRUPTIONS[how]
    body = wait_for_condition(api_client, namespace, job, "Restarting", timeout=timeout)
    assert body["status"]["attempt"] == 2
    assert f"Worker 1 (pod {job}-worker-1) {says}" in condition(body, "Restarting")["message"]
    counts = body["status"]["replicaStatuses"]["Worker"]
    if how == "sigkill":
        assert counts.get("restarts") == 1, counts
    else:
        assert counts.get("disruptions") == 1, counts
        assert "restarts" not in counts, counts
    return body
