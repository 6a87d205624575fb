"""How soon a trainer runs again on a healthy node: its pod deleted and created anew (how the
operator restarts a job) against its containers restarted in place by the kubelet
(KEP-5532's RestartAllContainers action, beta and on by default in Kubernetes 1.36).

Runs on the real node of `make up`'s cluster with the trainer image; each trial ends the
trainer's process the same way (SIGTERM from the host, which the script turns into exit 88)
and times until the new process has imported TensorFlow and says so in its log:

    python -m tfjob_bench.restart_paths --kubeconfig ~/.local/state/tfjob-operator/kubeconfig

Prints each path's times (minimum, median, maximum) over --trials trials.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from tfjob_localcluster.__main__ import TRAINER_IMAGE

NAMESPACE = f"restart-paths-{secrets.token_hex(3)}"
EXIT = 88
SCRIPT = (
    "import os, signal, sys, time\n"
    f"signal.signal(signal.SIGTERM, lambda *_: os._exit({EXIT}))\n"
    "import tensorflow\n"
    "print('ready', time.time(), flush=True)\n"
    "while True:\n"
    "    time.sleep(1)\n"
)
NODE_POOL = "cpu"  # `make up`'s real node: this machine, real containers


def pod(name: str, *, in_place: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "tensorflow",
        "image": TRAINER_IMAGE,
        "command": ["python", "-c", SCRIPT],
    }
    if in_place:
        container["restartPolicy"] = "Never"
        container["restartPolicyRules"] = [
            {"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [EXIT]}}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "restart-paths"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
            "nodeSelector": {"tfjob.dev/node-pool": NODE_POOL},
            "tolerations": [{"operator": "Exists"}],
        },
    }


def wait(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise TimeoutError(what)


def readies(core: k8s.CoreV1Api, name: str) -> int:
    try:
        return (core.read_namespaced_pod_log(name, NAMESPACE) or "").count("ready ")
    except ApiException:
        return 0


def terminate(name: str) -> None:
    """SIGTERM the trainer's process (the runtime gives it the pod's HOSTNAME)."""
    marker = f"HOSTNAME={name}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in environ and b"python" in command:
            os.kill(int(entry.name), signal.SIGTERM)
            return
    raise LookupError(f"no trainer process of {name}")


def gone(core: k8s.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, NAMESPACE)
    except ApiException as error:
        return error.status == 404
    return False


def recreated(core: k8s.CoreV1Api, name: str) -> float:
    """The operator's path: the process ends, its pod is deleted, a new one is created once
    the old is gone, and is scheduled, started and runs the script."""
    start = time.monotonic()
    terminate(name)
    wait(
        "the pod failed",
        lambda: core.read_namespaced_pod(name, NAMESPACE).status.phase != "Running",
    )
    core.delete_namespaced_pod(name, NAMESPACE)
    wait("the pod gone", lambda: gone(core, name))
    core.create_namespaced_pod(NAMESPACE, pod(name, in_place=False))
    wait("the new pod ready", lambda: readies(core, name) >= 1)
    return time.monotonic() - start


def in_place(core: k8s.CoreV1Api, name: str) -> float:
    """The kubelet's path: the process ends with the rule's exit code, and the kubelet starts
    every container of the same pod again (same sandbox, volumes and IP)."""
    before = core.read_namespaced_pod(name, NAMESPACE)
    uid, restarts = before.metadata.uid, before.status.container_statuses[0].restart_count
    start = time.monotonic()
    terminate(name)

    def again() -> bool:
        current = core.read_namespaced_pod(name, NAMESPACE)
        status = current.status.container_statuses[0]
        return status.restart_count > restarts and readies(core, name) >= 1

    wait("the container ready again", again)
    assert core.read_namespaced_pod(name, NAMESPACE).metadata.uid == uid
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    core = k8s.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    wait(
        "the namespace's default ServiceAccount",
        lambda: core.list_namespaced_service_account(NAMESPACE).items,
    )
    results: dict[str, list[float]] = {"deleted and created": [], "restarted in place": []}
    try:
        for label, kind, path in (
            ("deleted and created", False, recreated),
            ("restarted in place", True, in_place),
        ):
            name = "in-place" if kind else "recreated"
            core.create_namespaced_pod(NAMESPACE, pod(name, in_place=kind))
            wait(f"{name} ready", lambda name=name: readies(core, name) >= 1)
            for _ in range(args.trials):
                results[label].append(path(core, name))
                print(f"{label}: {results[label][-1]:.2f} s", flush=True)
    finally:
        core.delete_namespace(NAMESPACE)
    for label, times in results.items():
        print(
            f"{label:>20}: min {min(times):.2f} s, median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s over {len(times)} trials"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
