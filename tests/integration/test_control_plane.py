"""The harness proves itself: each promise the operator will rely on, checked on the real API."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import ssl
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tfjob_localcluster import control
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.nodepools import GPU_RESOURCE, NODE_POOL_LABEL

pytestmark = pytest.mark.timeout(120)

GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def pod(name: str, *, gpus: int = 0, tolerate_gpu: bool = False, **spec: object) -> dict:
    container: dict = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    body: dict = {
        "metadata": {"name": name},
        "spec": {"containers": [container], "restartPolicy": "Never", **spec},
    }
    if tolerate_gpu:
        body["spec"]["tolerations"] = [GPU_TOLERATION]
    return body


def node_pool_of(core: k8s.CoreV1Api, node_name: str) -> str:
    return core.read_node(node_name).metadata.labels[NODE_POOL_LABEL]


def test_cel_rule_refuses_object_with_its_message(kubectl, namespace: str) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=textwrap.dedent(
            """
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata: {name: ranges.harness.tfjob.dev}
            spec:
              group: harness.tfjob.dev
              scope: Namespaced
              names: {plural: ranges, singular: range, kind: Range}
              versions:
              - name: v1
                served: true
                storage: true
                schema:
                  openAPIV3Schema:
                    type: object
                    properties:
                      spec:
                        type: object
                        properties:
                          low: {type: integer}
                          high: {type: integer}
                        x-kubernetes-validations:
                        - rule: self.low <= self.high
                          message: spec.low must not exceed spec.high
            """
        ),
    )
    kubectl("wait", "--for=condition=Established", "crd/ranges.harness.tfjob.dev", "--timeout=30s")
    manifest = (
        "apiVersion: harness.tfjob.dev/v1\nkind: Range\nmetadata: {{name: {name}}}\n"
        "spec: {{low: {low}, high: {high}}}\n"
    )
    good = kubectl(
        "apply", "-n", namespace, "-f", "-", input=manifest.format(name="good", low=1, high=2)
    )
    assert "range.harness.tfjob.dev/good created" in good.stdout
    bad = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest.format(name="bad", low=3, high=2),
        check=False,
    )
    assert bad.returncode != 0
    assert "spec.low must not exceed spec.high" in bad.stderr
    assert "bad" not in kubectl("get", "ranges", "-n", namespace, "-o", "name").stdout


def test_owned_object_is_garbage_collected(core: k8s.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "child", "ownerReferences": [reference]}}
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})
    core.delete_namespaced_config_map("owner", namespace)
    control.wait_for_deletion(
        core.list_namespaced_config_map, "child", namespace=namespace, timeout=60
    )
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_eight_gpu_pod_lands_on_a_gpu_node(core: k8s.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("gpu8", gpus=8, tolerate_gpu=True))
    running = control.wait_for_pod_phase(core, namespace, "gpu8", "Running")
    node = core.read_node(running.spec.node_name)
    assert node.metadata.labels[NODE_POOL_LABEL] == "gpu-a100"
    assert node.status.allocatable[GPU_RESOURCE] == "8"
    assert running.status.pod_ip


def test_nine_gpu_pod_stays_pending_with_failed_scheduling(
    core: k8s.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("gpu9", gpus=9, tolerate_gpu=True))
    event = control.wait_for(
        core.list_namespaced_event,
        lambda events: next((e for e in events if e.reason == "FailedScheduling"), None),
        timeout=60,
        what="a FailedScheduling event for gpu9",
        namespace=namespace,
        field_selector="involvedObject.name=gpu9",
    )
    assert "Insufficient nvidia.com/gpu" in event.message
    current = core.read_namespaced_pod("gpu9", namespace)
    assert current.status.phase == "Pending"
    assert current.spec.node_name is None


def test_pods_without_the_toleration_never_land_on_gpu_nodes(
    core: k8s.CoreV1Api, namespace: str
) -> None:
    names = [f"cpu-{i}" for i in range(8)]
    for name in names:
        core.create_namespaced_pod(namespace, pod(name))
    core.create_namespaced_pod(namespace, pod("wants-gpu-no-toleration", gpus=1))

    def all_running(pods: list[k8s.V1Pod]) -> list[k8s.V1Pod] | None:
        running = [p for p in pods if p.metadata.name in names and p.status.phase == "Running"]
        return running if len(running) == len(names) else None

    running = control.wait_for(
        core.list_namespaced_pod,
        all_running,
        timeout=60,
        what="8 CPU pods running",
        namespace=namespace,
    )
    assert {node_pool_of(core, p.spec.node_name) for p in running} == {"cpu"}
    event = control.wait_for(
        core.list_namespaced_event,
        lambda events: next((e for e in events if e.reason == "FailedScheduling"), None),
        timeout=60,
        what="FailedScheduling for the GPU pod without toleration",
        namespace=namespace,
        field_selector="involvedObject.name=wants-gpu-no-toleration",
    )
    assert "untolerated taint" in event.message


@pytest.mark.parametrize(
    ("exit_code", "reason", "phase"),
    [(0, "Completed", "Succeeded"), (137, "OOMKilled", "Failed"), (3, None, "Failed")],
)
def test_pod_ends_with_the_chosen_exit_code(
    core: k8s.CoreV1Api, namespace: str, exit_code: int, reason: str | None, phase: str
) -> None:
    core.create_namespaced_pod(namespace, pod("trainer"))
    control.wait_for_pod_phase(core, namespace, "trainer", "Running")
    control.end_pod(
        core, namespace, "trainer", exit_code=exit_code, reason=reason, message="chosen by the test"
    )
    ended = control.wait_for_pod_phase(core, namespace, "trainer", phase)
    terminated = ended.status.container_statuses[0].state.terminated
    assert terminated.exit_code == exit_code
    assert terminated.reason == (reason or "Error")
    assert terminated.message == "chosen by the test"


def test_on_failure_pod_restarts_its_container(core: k8s.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("flaky", restartPolicy="OnFailure"))
    control.wait_for_pod_phase(core, namespace, "flaky", "Running")
    control.end_pod(core, namespace, "flaky", exit_code=1)
    restarted = control.wait_for_pod(
        core,
        namespace,
        "flaky",
        lambda p: (
            bool(p.status.container_statuses)
            and p.status.container_statuses[0].restart_count == 1
            and control.EXIT_CODE not in (p.metadata.annotations or {})
        ),
        what="flaky to restart once and its exit annotation to be consumed",
    )
    status = restarted.status.container_statuses[0]
    assert restarted.status.phase == "Running"
    assert status.last_state.terminated.exit_code == 1
    assert status.state.running is not None
    control.end_pod(core, namespace, "flaky", exit_code=0)
    done = control.wait_for_pod_phase(core, namespace, "flaky", "Succeeded")
    assert done.status.container_statuses[0].restart_count == 1


def test_headless_service_endpoint_slices_carry_hostnames_and_ips(
    core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "trainers"},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"app": "trainer"},
                "ports": [{"name": "tfjob-port", "port": 2222}],
            },
        },
    )
    for index in range(2):
        body = pod(f"trainer-{index}", hostname=f"trainer-{index}", subdomain="trainers")
        body["metadata"]["labels"] = {"app": "trainer"}
        core.create_namespaced_pod(namespace, body)
    pod_ips = {
        name: control.wait_for_pod_phase(core, namespace, name, "Running").status.pod_ip
        for name in ("trainer-0", "trainer-1")
    }
    discovery = k8s.DiscoveryV1Api(api_client)

    def endpoints(slices: list[k8s.V1EndpointSlice]) -> dict[str, str] | None:
        found = {
            e.hostname: e.addresses[0] for s in slices for e in (s.endpoints or []) if e.hostname
        }
        return found if len(found) == 2 else None

    found = control.wait_for(
        discovery.list_namespaced_endpoint_slice,
        endpoints,
        timeout=60,
        what="EndpointSlice entries for both pods",
        namespace=namespace,
        label_selector="kubernetes.io/service-name=trainers",
    )
    assert found == pod_ips


def test_narrow_role_is_refused_outside_its_verbs(
    cluster: LocalCluster, kubectl, api_client: k8s.ApiClient, namespace: str
) -> None:
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "narrow-user"}
            ],
        },
    )
    narrow = cluster.kubeconfig_for("narrow-user")
    allowed = kubectl("get", "pods", "-n", namespace, kubeconfig=narrow, check=False)
    assert allowed.returncode == 0, allowed.stderr
    with cluster.api_client(narrow) as narrow_api, pytest.raises(ApiException) as refused:
        k8s.CoreV1Api(narrow_api).create_namespaced_pod(namespace, pod("not-allowed"))
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'User "narrow-user" cannot create resource "pods"' in message
    elsewhere = kubectl("get", "pods", "-n", "default", kubeconfig=narrow, check=False)
    assert elsewhere.returncode != 0
    assert "Forbidden" in elsewhere.stderr


def test_node_goes_not_ready_and_back(core: k8s.CoreV1Api) -> None:
    node = "cpu-2"
    control.set_node_not_ready(core, node, reason="SimulatedKernelPanic")
    try:
        not_ready = control.wait_for_node_ready(core, node, status="False")
        ready = next(c for c in not_ready.status.conditions if c.type == "Ready")
        assert ready.reason == "SimulatedKernelPanic"
    finally:
        control.set_node_ready(core, node)
    control.wait_for_node_ready(core, node, status="True")


def test_removed_node_is_gone_and_others_stay(cluster: LocalCluster, core: k8s.CoreV1Api) -> None:
    from tfjob_localcluster.nodepools import NodePool, NodePools

    extra = NodePools(pools=[NodePool(name="doomed", count=1, cpu="4", memory="8Gi")])
    cluster.create_nodes(extra)
    control.wait_for_node_ready(core, "doomed-0")
    control.remove_node(core, "doomed-0")
    names = {n.metadata.name for n in core.list_node().items}
    assert "doomed-0" not in names
    assert {"gpu-a100-0", "gpu-t4-0", "cpu-0"} <= names


def test_helm_installs_and_uninstalls_into_the_cluster(helm, core, namespace, tmp_path) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    helm("install", "probe", str(chart), "-n", namespace, "--wait", "--timeout", "30s")
    created = core.read_namespaced_config_map("probe-probe", namespace)
    assert created.data == {"greeting": "hello"}
    helm("uninstall", "probe", "-n", namespace, "--wait")
    control.wait_for_deletion(core.list_namespaced_config_map, "probe-probe", namespace=namespace)


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses a process listens on (its sockets' inodes, found in /proc/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            if size == 4:
                ip = str(ipaddress.IPv4Address(raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                ip = str(ipaddress.IPv6Address(words))
            found.add((ip, int(port, 16)))
    return found


def process_named(cluster: LocalCluster, prefix: str) -> int:
    (process,) = [p for p in cluster.running if p.name == prefix] or [
        p for node in cluster.real_nodes for p in node.running if p.name.startswith(prefix)
    ]
    return process.pid


def test_the_local_cluster_is_as_closed_as_a_real_one(cluster: LocalCluster) -> None:
    """Nothing listens beyond loopback and a real node's own address; etcd takes clients by
    certificate alone; a real node's kubelet answers no anonymous request and asks the API
    server about every other (the API server's own certificate may read logs and exec)."""
    assert cluster.ports is not None
    api = listening(process_named(cluster, "kube-apiserver"))
    assert api == {("127.0.0.1", cluster.ports.apiserver)}, api
    etcd = listening(process_named(cluster, "etcd"))
    assert {ip for ip, _ in etcd} == {"127.0.0.1"}, etcd
    ca = str(cluster.pki_dir / "ca.crt")
    # etcd: TLS with a certificate of the cluster's CA, or nothing.
    anonymous = ssl.create_default_context(cafile=ca)
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(
            f"https://127.0.0.1:{cluster.ports.etcd_client}/health", context=anonymous, timeout=5
        ).read()
    with pytest.raises((ConnectionError, urllib.error.URLError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{cluster.ports.etcd_client}/health", timeout=5)

    if not cluster.real_nodes:
        return
    node = cluster.real_nodes[0]
    forward = listening(process_named(cluster, "api-forward-"))
    assert forward == {(node.node_ip, cluster.ports.apiserver)}, forward
    kubelet = f"https://{node.node_ip}:10250/pods"

    def as_(stem: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the kubelet serves with a certificate of its own
        if stem is not None:
            pki = cluster.pki_dir
            context.load_cert_chain(pki / f"{stem}.crt", pki / f"{stem}.key")
        return context

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(kubelet, context=as_(None), timeout=5)
    assert refused.value.code == 401  # anonymous
    cluster.kubeconfig_for("nobody")  # a certificate of the cluster's CA, and no permission
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        urllib.request.urlopen(kubelet, context=as_("client-nobody"), timeout=5)
    assert forbidden.value.code == 403
    with urllib.request.urlopen(kubelet, context=as_("kubelet-client"), timeout=5) as allowed:
        assert json.loads(allowed.read())["kind"] == "PodList"
