"""The local node behaves like a kubelet for what training needs: each pod its own IP and
hostname, cluster DNS names from EndpointSlices, volumes and env as the spec says, restart
policies, graceful deletion, and logs through kubectl."""

from __future__ import annotations

import json
import textwrap

import pytest
from kubernetes import client as k8s

from tfjob_localcluster import control, processes

pytestmark = [pytest.mark.timeout(180)]

PLACEMENT = {
    "nodeSelector": {"tfjob.dev/node-pool": "local"},
    "tolerations": [{"key": "tfjob.dev/local-node", "operator": "Exists"}],
}

PROBE = textwrap.dedent(
    """
    import json, os, socket, sys, time
    me, peer = sys.argv[1], sys.argv[2]
    server = socket.create_server(("0.0.0.0", 2222))
    deadline = time.time() + 60
    while True:  # the peer's name appears once its pod has an address
        try:
            address = socket.gethostbyname(peer)
            connection = socket.create_connection((peer, 2222), timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    connection.sendall(me.encode())
    accepted, _ = server.accept()
    heard = accepted.recv(100).decode()
    print(json.dumps({"hostname": socket.gethostname(), "own": socket.gethostbyname(me),
                      "peer": address, "heard": heard, "env": os.environ.get("GREETING")}))
    """
)


def pod(name: str, command: list[str], **spec: object) -> dict:
    return {
        "metadata": {"name": name, "labels": {"app": "probe"}},
        "spec": {
            **PLACEMENT,
            "hostname": name,
            "subdomain": "probes",
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "local", "command": command}],
            **spec,
        },
    }


def test_pods_have_their_own_ip_hostname_and_cluster_dns_names(
    kubectl, core: k8s.CoreV1Api, namespace: str, local_node: str
) -> None:
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "probes"},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"app": "probe"},
            },
        },
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "greeting"}, "stringData": {"text": "hello from a secret"}}
    )
    domain = f"probes.{namespace}.svc.cluster.local"
    for me, peer in (("probe-a", "probe-b"), ("probe-b", "probe-a")):
        body = pod(me, ["python", "-c", PROBE, f"{me}.{domain}", f"{peer}.{domain}"])
        body["spec"]["containers"][0]["env"] = [
            {"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "greeting", "key": "text"}}}
        ]
        core.create_namespaced_pod(namespace, body)
    results = {}
    for me in ("probe-a", "probe-b"):
        done = control.wait_for_pod_phase(core, namespace, me, "Succeeded", timeout=90)
        results[me] = (done, json.loads(kubectl("logs", "-n", namespace, me).stdout))
    (pod_a, seen_a), (pod_b, seen_b) = results["probe-a"], results["probe-b"]
    assert seen_a["hostname"] == "probe-a"
    assert seen_b["hostname"] == "probe-b"
    assert pod_a.status.pod_ip != pod_b.status.pod_ip
    assert seen_a["own"] == pod_a.status.pod_ip
    assert seen_a["peer"] == pod_b.status.pod_ip
    assert seen_b["peer"] == pod_a.status.pod_ip
    assert seen_a["heard"] == f"probe-b.{domain}"
    assert seen_a["env"] == "hello from a secret"


def test_volumes_are_materialised_as_files(
    kubectl, core: k8s.CoreV1Api, namespace: str, local_node: str
) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"lr": "0.01"}}
    )
    script = (
        "import pathlib;"
        "print(pathlib.Path('/etc/settings/lr').read_text());"
        "pathlib.Path('/scratch/out').write_text('x');"
        "print(pathlib.Path('/scratch/out').read_text())"
    )
    body = pod("volumes", ["python", "-c", script])
    body["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "settings", "mountPath": "/etc/settings", "readOnly": True},
        {"name": "scratch", "mountPath": "/scratch"},
    ]
    body["spec"]["volumes"] = [
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    core.create_namespaced_pod(namespace, body)
    control.wait_for_pod_phase(core, namespace, "volumes", "Succeeded", timeout=60)
    assert kubectl("logs", "-n", namespace, "volumes").stdout.split() == ["0.01", "x"]


def test_on_failure_restarts_the_process_and_counts_it(
    core: k8s.CoreV1Api, namespace: str, local_node: str, tmp_path
) -> None:
    marker = tmp_path / "first-run-done"
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]);"
        "sys.exit(0) if p.exists() else (p.write_text('1'), sys.exit(3))"
    )
    body = pod(
        "flaky", ["python", "-c", script, "/marker/first-run-done"], restartPolicy="OnFailure"
    )
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "marker", "mountPath": "/marker"}]
    body["spec"]["volumes"] = [{"name": "marker", "hostPath": {"path": str(tmp_path)}}]
    core.create_namespaced_pod(namespace, body)
    done = control.wait_for_pod_phase(core, namespace, "flaky", "Succeeded", timeout=60)
    status = done.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 3
    assert status.state.terminated.exit_code == 0
    assert marker.exists()


def test_a_containers_termination_message_reaches_its_status(
    core: k8s.CoreV1Api, namespace: str, local_node: str
) -> None:
    """As a kubelet does: what a container wrote to /dev/termination-log (its
    terminationMessagePath, defaulted by the API server) is its terminated state's message."""
    script = "open('/dev/termination-log', 'w').write('all done: 42')"
    core.create_namespaced_pod(namespace, pod("farewell", ["python", "-c", script]))
    done = control.wait_for_pod_phase(core, namespace, "farewell", "Succeeded", timeout=60)
    assert done.status.container_statuses[0].state.terminated.message == "all done: 42"


def test_deletion_sends_sigterm_then_the_pod_goes(
    kubectl, core: k8s.CoreV1Api, namespace: str, local_node: str, tmp_path
) -> None:
    script = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        "    pathlib.Path('/out/terminated').write_text('SIGTERM'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    body = pod("graceful", ["python", "-c", script], terminationGracePeriodSeconds=20)
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    body["spec"]["volumes"] = [{"name": "out", "hostPath": {"path": str(tmp_path)}}]
    core.create_namespaced_pod(namespace, body)
    control.wait_for_pod_phase(core, namespace, "graceful", "Running", timeout=60)
    # Running means started, not yet listening for signals: wait for the script to say so.
    processes.wait_until(
        lambda: "ready" in kubectl("logs", "-n", namespace, "graceful").stdout,
        timeout=30,
        what="the script to install its SIGTERM handler",
        interval=0.2,
    )
    core.delete_namespaced_pod("graceful", namespace)
    control.wait_for_deletion(core.list_namespaced_pod, "graceful", namespace=namespace, timeout=30)
    assert (tmp_path / "terminated").read_text() == "SIGTERM"
