"""The person's command: `tfjob-local up` starts a detached cluster; `down` leaves nothing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tfjob_localcluster import binaries
from tfjob_localcluster.processes import start_time_of

pytestmark = pytest.mark.timeout(180)


def tfjob_local(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfjob_localcluster", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Closed connections may linger in TIME_WAIT; only a listener still holding it counts.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_up_then_down_leaves_no_process_or_port(tmp_path: Path) -> None:
    binaries.ensure_built(log=lambda message: None)
    pools = tmp_path / "pools.yaml"
    pools.write_text(
        "pools:\n- {name: tiny-gpu, count: 1, gpus: 2}\n- {name: tiny-cpu, count: 1}\n"
    )
    state_dir = tmp_path / "state"
    up = tfjob_local(state_dir, "up", "--node-pools", str(pools))
    assert up.returncode == 0, up.stdout + up.stderr
    print(up.stdout)
    assert f"export KUBECONFIG={state_dir / 'kubeconfig'}" in up.stdout

    state = json.loads((state_dir / "cluster.json").read_text())
    pids = {p["name"]: (p["pid"], p["start_time"]) for p in state["processes"]}
    assert set(pids) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "tfjob-operator",
    }
    try:
        # The cluster outlives the command that started it, and kubectl reaches it.
        nodes = subprocess.run(
            [
                binaries.kubectl(),
                "--kubeconfig",
                str(state_dir / "kubeconfig"),
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert sorted(nodes.stdout.split()) == ["tiny-cpu-0", "tiny-gpu-0"]
        # The operator runs the embedded sample job: its two workers get scheduled and run.
        wait = subprocess.run(
            [
                binaries.kubectl(),
                "--kubeconfig",
                str(state_dir / "kubeconfig"),
                "wait",
                "--for=jsonpath={.status.state}=Running",
                "tensorflowjob/keras-multi-worker",
                "--timeout=60s",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert wait.returncode == 0, wait.stderr
        pods = subprocess.run(
            [
                binaries.kubectl(),
                "--kubeconfig",
                str(state_dir / "kubeconfig"),
                "get",
                "pods",
                "-l",
                "tfjob.dev/job-name=keras-multi-worker",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert sorted(pods.stdout.split()) == [
            "pod/keras-multi-worker-worker-0",
            "pod/keras-multi-worker-worker-1",
        ]
        again = tfjob_local(state_dir, "up", "--node-pools", str(pools))
        assert "already running" in again.stdout
        status = tfjob_local(state_dir, "status")
        assert status.returncode == 0
    finally:
        down = tfjob_local(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    survivors = [name for name, (pid, started) in pids.items() if start_time_of(pid) == started]
    assert survivors == []
    busy = [port for port in state["ports"].values() if not port_is_free(port)]
    assert busy == []
    assert tfjob_local(state_dir, "status").returncode == 1
