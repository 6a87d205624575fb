"""A real node (kubelet, containerd, runc, CNI bridge, CoreDNS) joins the local cluster and runs
the project's own images as containers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE, REAL_NODE_LABELS, REAL_NODE_TAINT
from tests.support.install import CHART, find, manifest, restricted_namespace
from tests.support.jobs import apply, estimator_job, wait_for_condition, wait_for_pods
from tests.support.own_cluster import own_cluster
from tests.support.session import Tool
from tfjob_localcluster import binaries, control, images, processes
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.network import NODE_IP
from tfjob_localcluster.nodepools import NodePool
from tfjob_localcluster.operator_process import OperatorProcess
from tfjob_localcluster.realnode import RealNode
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("machine_for_a_real_node")]

POOL = NodePool(name="cpu", count=1, cpu="8", memory="32Gi")
OPERATOR_IMAGE = images.IMAGES["operator"].tags[0]


@dataclass
class RealCluster:
    api: k8s.ApiClient
    node: RealNode
    cluster: LocalCluster
    operator: OperatorProcess  # the operator as a process beside the cluster


@contextmanager
def real_cluster(tmp_path: Path, image: str) -> Iterator[RealCluster]:
    """A cluster of the test's own with its operator, and a Ready real node (cluster DNS,
    kube-proxy, the API server reachable from pods) holding ``image`` (built first if need
    be); the node leaves nothing behind on the machine."""
    built = next(i for i in images.IMAGES.values() if image in i.tags)
    images.build_images([built.name])
    with own_cluster(tmp_path / "cluster", POOL, pod_facing_address=NODE_IP) as (
        cluster,
        api,
        operator,
    ):
        node = cluster.add_real_node(
            labels=REAL_NODE_LABELS, taints=[f"{REAL_NODE_TAINT}=true:NoSchedule"]
        )
        node.load_image(image, also=tuple(t for t in built.tags if t != image))
        yield RealCluster(api, node, cluster, operator)


@contextmanager
def cluster_with_real_node(tmp_path: Path, image: str) -> Iterator[tuple[k8s.ApiClient, RealNode]]:
    with real_cluster(tmp_path, image) as real:
        yield real.api, real.node


def test_a_real_node_joins_and_runs_the_operator_image_as_a_container(tmp_path: Path) -> None:
    with cluster_with_real_node(tmp_path, OPERATOR_IMAGE) as (api, node):
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "operator-image"},
                "spec": {
                    **ON_REAL_NODE,
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": OPERATOR_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", "id -u; tfjob-operator --help"],
                            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                        }
                    ],
                },
            },
        )
        processes.wait_until(
            lambda: (
                core.read_namespaced_pod("operator-image", "default").status.phase
                in ("Succeeded", "Failed")
            ),
            timeout=120,
            what="the pod's end",
        )
        pod = core.read_namespaced_pod("operator-image", "default")
        (status,) = pod.status.container_statuses
        assert pod.status.phase == "Succeeded", pod.status
        assert status.state.terminated.exit_code == 0
        assert pod.spec.node_name == "real-0"
        log = "".join(path.read_text() for path in (node.state_dir / "pod-logs").rglob("*.log"))
        assert " stdout F 65532\n" in log, log  # the image's non-root USER


TRAINER_IMAGE = images.IMAGES["trainer-cpu"].tags[0]


def test_an_estimator_job_trains_in_a_container_of_the_trainer_image(tmp_path: Path) -> None:
    """The seed document's first example, through the operator: `train.py` with script
    parameters, in the trainer image the project builds, on the real node."""
    with cluster_with_real_node(tmp_path, TRAINER_IMAGE) as (api, node):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            estimator_job(
                "seed-single",
                image=TRAINER_IMAGE,
                scriptParams={"--epochs": 2, "--steps-per-epoch": 5, "--samples": 256},
                template={"spec": ON_REAL_NODE},
            ),
        )
        processes.wait_until(
            lambda: (
                (
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, "default", PLURAL, "seed-single"
                    ).get("status")
                    or {}
                ).get("state")
                in ("Succeeded", "Failed")
            ),
            timeout=300,
            what="the job's end",
        )
        job = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "seed-single")
        assert job["status"]["state"] == "Succeeded", job["status"]
        (pod,) = core.list_namespaced_pod(
            "default", label_selector="tfjob.dev/job-name=seed-single"
        ).items
        assert pod.spec.node_name == "real-0"
        (container,) = pod.status.container_statuses
        assert container.image.endswith(TRAINER_IMAGE.split("/")[-1])
        log = "".join(path.read_text() for path in (node.state_dir / "pod-logs").rglob("*.log"))
        assert "Epoch 2/2" in log, log[-2000:]


def test_the_charts_operator_runs_as_a_restricted_pod_and_reconciles_through_its_account(
    tmp_path: Path,
) -> None:
    """The Helm chart's Deployment as a real pod of the operator image: admitted under the
    restricted Pod Security profile, Ready by its probes, talking to the API server through the
    `kubernetes` Service with its ServiceAccount, and running a job to success."""
    with real_cluster(tmp_path, OPERATOR_IMAGE) as real:
        real.operator.stop()  # the chart's operator alone from here on
        kubectl = Tool(binaries.kubectl(), real.cluster.kubeconfig)
        helm = Tool(str(binaries.binary("helm")), real.cluster.kubeconfig)
        core = k8s.CoreV1Api(real.api)
        restricted_namespace(kubectl, "tfjob-system")
        helm(
            "install",
            "tfjob",
            str(CHART),
            "-n",
            "tfjob-system",
            "--set",
            "nodeSelector.tfjob\\.dev/node-pool=real",
            "--set",
            f"tolerations[0].key={REAL_NODE_TAINT},tolerations[0].operator=Exists",
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "180s",
            timeout=240,
        )
        (deployment,) = find(manifest(helm, "tfjob", "tfjob-system"), "Deployment")
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )
        (pod,) = core.list_namespaced_pod("tfjob-system", label_selector=selector).items
        assert pod.spec.node_name == "real-0"
        (status,) = pod.status.container_statuses
        assert status.ready, status
        assert status.restart_count == 0, status

        apply(
            kubectl,
            "default",
            estimator_job(
                "via-service-account",
                distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
            ),
        )
        wait_for_pods(
            core,
            "default",
            "via-service-account",
            {"via-service-account-worker-0", "via-service-account-worker-1"},
        )
        wait_for_condition(real.api, "default", "via-service-account", "Running")
        control.end_pod(core, "default", "via-service-account-worker-0", exit_code=0)
        wait_for_condition(real.api, "default", "via-service-account", "Succeeded")
        log = kubectl("logs", "-n", "tfjob-system", pod.metadata.name).stdout
        assert "default/via-service-account: Succeeded" in log, log[-3000:]
    # The node took its rules, address and bridge with it.
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert "KUBE-" not in rules
    addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    assert NODE_IP not in addresses.stdout
    assert "tfjob-real-0" not in addresses.stdout
