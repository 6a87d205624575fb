"""Fixtures shared by every test layer: one real control plane per session, started on demand."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.support.constants import CRD_FILE, REAL_NODE_LABELS, REAL_NODE_TAINT
from tests.support.session import SESSION_CLUSTER, Tool
from tfjob_localcluster import binaries, images, nodepools, processes
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.control import wait_for
from tfjob_localcluster.network import NODE_IP
from tfjob_localcluster.operator_process import OperatorProcess
from tfjob_localcluster.realnode import RealNode

TRAINER_IMAGE = images.IMAGES["trainer-cpu"].tags[0]


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """The session's control plane with the default GPU and CPU node pools."""
    binaries.ensure_built(log=lambda message: None)
    local = LocalCluster(
        state_dir=tmp_path_factory.mktemp("cluster"),
        node_pools=nodepools.load(nodepools.SIMULATED),
        pod_facing_address=NODE_IP,  # for the real node, if a test asks for it
    )
    request.session.stash[SESSION_CLUSTER] = local
    local.start()
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in local.startup_seconds.items())
    print(f"\nlocal control plane ready ({timings})")
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[k8s.ApiClient]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture(scope="session")
def core(api_client: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api_client)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core: k8s.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test, ready for pods (its default ServiceAccount exists)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"tfjob.dev/test": "true"}}})
    wait_for(
        core.list_namespaced_service_account,
        lambda accounts: any(a.metadata.name == "default" for a in accounts),
        timeout=30,
        what=f"the default ServiceAccount of {name}",
        namespace=name,
    )
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture(scope="session")
def kubectl(cluster: LocalCluster) -> Tool:
    return Tool(binaries.kubectl(), cluster.kubeconfig)


@pytest.fixture(scope="session")
def helm(cluster: LocalCluster) -> Tool:
    return Tool(str(binaries.binary("helm")), cluster.kubeconfig)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration need the control plane: mark them so `-m` can pick. Tests
    marked `last` run after every other."""
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def crd(kubectl: Tool) -> str:
    """The committed TensorFlowJob CRD, applied the way users apply it (client-side)."""
    kubectl("apply", "-f", str(CRD_FILE))
    # (kubectl wait fails outright if it looks before the CRD has any condition at all.)
    processes.wait_until(
        lambda: (
            kubectl(
                "get",
                "crd/tensorflowjobs.tfjob.dev",
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Established")].status}',
            ).stdout
            == "True"
        ),
        timeout=60,
        what="the TensorFlowJob CRD to be established",
        interval=0.2,
    )
    # Discovery and the published OpenAPI (what kubectl explain reads) follow a moment later.
    processes.wait_until(
        lambda: kubectl("explain", "tensorflowjob.spec", check=False).returncode == 0,
        timeout=60,
        what="the TensorFlowJob schema in the API server's OpenAPI",
        interval=0.5,
    )
    return "tensorflowjobs.tfjob.dev"


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, crd: str) -> Iterator[OperatorProcess]:
    """The operator as its own process, watching every namespace of the session's cluster."""
    pools = {p.name: {"gpu": p.gpus > 0} for p in cluster.node_pools.pools}
    process = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_dir=cluster.log_dir,
        # Estimator jobs without an image run the trainer image the project builds.
        env={"TFJOB_NODE_POOLS": json.dumps(pools), "TFJOB_DEFAULT_IMAGE": TRAINER_IMAGE},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def real_node(cluster: LocalCluster) -> RealNode:
    """The session cluster's real node: kubelet, containerd, CoreDNS, kube-proxy. Pods with
    ON_REAL_NODE run there as containers of the project's images."""
    return cluster.add_real_node(
        labels=REAL_NODE_LABELS, taints=[f"{REAL_NODE_TAINT}=true:NoSchedule"]
    )


@pytest.fixture
def machine_for_a_real_node(cluster: LocalCluster) -> Iterator[None]:
    """For a test that runs a real node of its own: one real node per machine, so the
    session's, if it runs, steps aside meanwhile."""
    with cluster.real_nodes_stopped():
        yield


def _on(node: RealNode, name: str) -> str:
    """Image ``name``, built from its Dockerfile if need be, in the node's containerd."""
    image = images.IMAGES[name]
    images.build_images([image.name])
    node.load_image(image.tags[0])
    return image.tags[0]


@pytest.fixture(scope="session")
def horovod_image(real_node: RealNode) -> str:
    """The Horovod image (images/horovod) on the real node."""
    return _on(real_node, "horovod")


@pytest.fixture(scope="session")
def trainer_image(real_node: RealNode) -> str:
    """The CPU trainer image (images/trainer-cpu) on the real node: estimator jobs' default."""
    return _on(real_node, "trainer-cpu")
