"""The person's command: `tfjob-local up` starts a detached cluster whose CPU node is this
machine as a real node, the operator and a sample job that trains in containers of the trainer
image; the lines it prints work as shown; `down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tfjob_localcluster import binaries
from tfjob_localcluster.processes import start_time_of

pytestmark = pytest.mark.timeout(900)

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLES = REPOSITORY / "examples"


def tfjob_local(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfjob_localcluster", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=600,  # images are built first, when they are not cached yet
        check=False,
        cwd=REPOSITORY,
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


def host_network() -> list[str]:
    """This machine's addresses, links and iptables rules (without counters and comments)."""
    text = "".join(
        subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for argv in (["ip", "-o", "addr"], ["ip", "-o", "link"], ["iptables-save"])
    )
    return [re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if line[:1] != "#"]


def printed_lines(output: str) -> list[str]:
    """The shell lines `up` tells a person to run."""
    lines = output.split("Point kubectl at it with:\n", 1)[1].splitlines()
    return [line.strip() for line in lines if line.startswith("  ")]


@pytest.mark.usefixtures("machine_for_a_real_node")
def test_up_trains_the_sample_job_then_down_leaves_nothing(tmp_path: Path) -> None:
    pools = tmp_path / "pools.yaml"
    pools.write_text(
        "pools:\n- {name: tiny-gpu, count: 1, gpus: 2}\n- {name: cpu, count: 1, runtime: real}\n"
    )
    state_dir = tmp_path / "state"
    network_before = host_network()
    up = tfjob_local(state_dir, "up", "--node-pools", str(pools), "--horovod")
    assert up.returncode == 0, up.stdout + up.stderr
    print(up.stdout)
    assert f"export KUBECONFIG={state_dir / 'kubeconfig'}" in up.stdout

    state = json.loads((state_dir / "cluster.json").read_text())
    (node,) = state["real_nodes"]
    pids = {p["name"]: (p["pid"], p["start_time"]) for p in state["processes"] + node["processes"]}

    def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binaries.kubectl(), "--kubeconfig", str(state_dir / "kubeconfig"), *args],
            capture_output=True,
            text=True,
            timeout=200,
            check=check,
        )

    try:
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
            "tfjob-operator",
            # the real node (its pods reach the API server, on loopback, at its address)
            "api-forward-cpu-0",
            "containerd-cpu-0",
            "kubelet-cpu-0",
            "coredns-cpu-0",
            "kube-proxy-cpu-0",
        }
        # The cluster outlives the command that started it, and the lines it printed work in a
        # shell that has nothing of this project on its PATH.
        shown = subprocess.run(
            ["bash", "-euc", "\n".join(printed_lines(up.stdout))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert {"cpu-0", "tiny-gpu-0"} <= {line.split()[0] for line in shown.stdout.splitlines()}
        # The sample job (examples/multi-worker-mirrored.yaml) trains on this machine, in
        # containers of the trainer image.
        done = kubectl(
            "wait",
            "--for=jsonpath={.status.state}=Succeeded",
            "tensorflowjob/keras-multi-worker",
            "--timeout=180s",
            check=False,
        )
        assert done.returncode == 0, done.stderr + kubectl("get", "tfj,pods", "-o", "wide").stdout
        output = kubectl("logs", "keras-multi-worker-worker-1").stdout
        assert "worker 1: replicas in sync 2" in output
        pod = json.loads(kubectl("get", "pod", "keras-multi-worker-worker-1", "-o", "json").stdout)
        assert pod["spec"]["nodeName"] == "cpu-0"
        assert pod["status"]["containerStatuses"][0]["image"].endswith("tfjob-trainer-cpu:2.21.0")
        # The seed document's Horovod example, as README walks it: its folder shipped by
        # `kubectl tfjob`, mpirun over 2 workers, in containers of the Horovod image.
        horovod = subprocess.run(
            [
                binaries.kubectl(), "tfjob", "submit", str(EXAMPLES / "my-horovod-proj"),
                "--entry-script", "train_horovod.py", "-p", "epochs=1",
                "--backend", "mpi", "--node-count", "2", "--wait", "--timeout", "240",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={
                **os.environ,
                "KUBECONFIG": str(state_dir / "kubeconfig"),
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            },
        )  # fmt: skip
        assert horovod.returncode == 0, horovod.stdout + horovod.stderr
        assert horovod.stdout.splitlines()[-1].startswith("my-horovod-proj succeeded")
        launcher = kubectl("logs", "my-horovod-proj-launcher-0").stdout
        hosts = sorted(re.findall(r"rank \d of 2 \(local 0 of 1\) on (\S+)", launcher))
        assert hosts == ["my-horovod-proj-worker-0", "my-horovod-proj-worker-1"], launcher[-2000:]
        again = tfjob_local(state_dir, "up", "--node-pools", str(pools))
        assert "already running" in again.stdout
        assert tfjob_local(state_dir, "status").returncode == 0
    finally:
        down = tfjob_local(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    survivors = [name for name, (pid, started) in pids.items() if start_time_of(pid) == started]
    assert survivors == []
    busy = [port for port in state["ports"].values() if not port_is_free(port)]
    assert busy == []
    # The node's address, bridge and the kubelet's and kube-proxy's rules went with it.
    assert host_network() == network_before
    assert tfjob_local(state_dir, "status").returncode == 1
