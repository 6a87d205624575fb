"""Queueing through Kueue (built from the Go module proxy, running beside the control plane
with its webhooks): jobs in a LocalQueue wait, gated, until their whole quota fits the
ClusterQueue's GPUs, in order; a job deleted admits the next."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.support.jobs import apply, kubeflow_job, replica, wait_for_condition, wait_for_job
from tfjob_localcluster import binaries, control
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.kueue import MANAGED_LABEL, Kueue

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("operator")]

KUEUE = ("kueue.x-k8s.io", "v1beta2")
GATE = "kueue.x-k8s.io/admission"


@pytest.fixture(scope="module")
def kueue(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    binaries.ensure_built(["kueue"], log=lambda message: None)
    running = Kueue(
        kubeconfig=cluster.kubeconfig,
        state_dir=tmp_path_factory.mktemp("kueue"),
        log_dir=cluster.log_dir,
        kubectl=binaries.kubectl(),
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def kind(name: str) -> dict[str, str]:
    return {"apiVersion": "/".join(KUEUE), "kind": name}


@pytest.fixture
def queue(kueue: Kueue, api_client: k8s.ApiClient, core: k8s.CoreV1Api, namespace: str) -> str:
    """A LocalQueue in a Kueue-managed namespace, on a ClusterQueue of 8 GPUs (StrictFIFO)."""
    custom = k8s.CustomObjectsApi(api_client)
    core.patch_namespace(namespace, {"metadata": {"labels": {MANAGED_LABEL: "true"}}})
    flavor = f"flavor-{namespace}"[:63]
    custom.create_cluster_custom_object(
        *KUEUE, "resourceflavors", {**kind("ResourceFlavor"), "metadata": {"name": flavor}}
    )
    custom.create_cluster_custom_object(
        *KUEUE,
        "clusterqueues",
        {
            **kind("ClusterQueue"),
            "metadata": {"name": namespace},
            "spec": {
                "namespaceSelector": {},
                "queueingStrategy": "StrictFIFO",
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                        "flavors": [
                            {
                                "name": flavor,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "100"},
                                    {"name": "memory", "nominalQuota": "1000Gi"},
                                    {"name": "nvidia.com/gpu", "nominalQuota": "8"},
                                ],
                            }
                        ],
                    }
                ],
            },
        },
    )
    custom.create_namespaced_custom_object(
        *KUEUE,
        namespace,
        "localqueues",
        {**kind("LocalQueue"), "metadata": {"name": "team"}, "spec": {"clusterQueue": namespace}},
    )
    return "team"


def queued_job(name: str, queue: str) -> dict:
    """Two workers of 4 GPUs each: a whole ClusterQueue's quota."""
    return kubeflow_job(
        name,
        {"Worker": replica(2, gpus=4, restartPolicy="Never")},
        nodePool="gpu-a100",
        runPolicy={"schedulingPolicy": {"queue": queue}},
    )


def state(pods: list[k8s.V1Pod]) -> dict[str, tuple[int, int, int]]:
    """Per job: (pods, gated by Kueue, bound to a node)."""
    found: dict[str, tuple[int, int, int]] = {}
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        job = (pod.metadata.labels or {}).get("tfjob.dev/job-name", "")
        total, gated, bound = found.get(job, (0, 0, 0))
        is_gated = any(g.name == GATE for g in pod.spec.scheduling_gates or [])
        found[job] = (total + 1, gated + is_gated, bound + bool(pod.spec.node_name))
    return found


def wait_for_state(core: k8s.CoreV1Api, namespace: str, wanted: dict, what: str) -> None:
    try:
        control.wait_for(
            core.list_namespaced_pod,
            lambda pods: (
                all(state(pods).get(job) == counts for job, counts in wanted.items()) or None
            ),
            timeout=90,
            what=what,
            namespace=namespace,
        )
    except control.WaitTimeout as timeout:
        raise AssertionError(f"{timeout}: {explain(core, namespace)}") from timeout


def explain(core: k8s.CoreV1Api, namespace: str) -> str:
    """The pods and Kueue Workloads of the namespace, for a failure's message."""
    pods = core.list_namespaced_pod(namespace).items
    workloads = k8s.CustomObjectsApi(core.api_client).list_namespaced_custom_object(
        *KUEUE, namespace, "workloads"
    )["items"]
    lines = [
        f"pod {p.metadata.name} {p.status.phase} on {p.spec.node_name} "
        f"deleting={bool(p.metadata.deletion_timestamp)} finalizers={p.metadata.finalizers}"
        for p in pods
    ]
    lines += [
        f"workload {w['metadata']['name']}: "
        + str(
            [
                (c["type"], c["status"], c.get("message"))
                for c in (w.get("status") or {}).get("conditions") or []
            ]
        )
        for w in workloads
    ]
    return "\n".join(lines)


def test_jobs_wait_gated_for_quota_in_order_and_a_deleted_job_admits_the_next(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, queue: str
) -> None:
    apply(kubectl, namespace, queued_job("first", queue))
    wait_for_state(core, namespace, {"first": (2, 0, 2)}, "first admitted and placed")
    wait_for_condition(api_client, namespace, "first", "Running")
    apply(kubectl, namespace, queued_job("second", queue))
    wait_for_state(core, namespace, {"second": (2, 2, 0)}, "second gated, its pods all there")
    control.wait_for(
        functools.partial(
            k8s.CustomObjectsApi(api_client).list_namespaced_custom_object,
            *KUEUE,
            namespace,
            "workloads",
        ),
        lambda workloads: (
            any(w["metadata"]["name"].startswith("second-") for w in workloads) or None
        ),
        timeout=30,
        what="second's Kueue Workload",
    )
    # Kueue orders a queue by its Workloads' creationTimestamp, which counts whole seconds: the
    # third must come at least a second later to be behind the second for sure.
    time.sleep(1.1)
    apply(kubectl, namespace, queued_job("third", queue))
    wait_for_state(core, namespace, {"third": (2, 2, 0)}, "third gated behind it")

    # Waiting in the queue is on the job's status, with Kueue's gate as the reason.
    job = wait_for_job(
        api_client,
        namespace,
        "second",
        lambda body: bool(((body or {}).get("status") or {}).get("waiting")),
        "second's status to say it waits",
    )
    assert job is not None
    assert {w["reason"] for w in job["status"]["waiting"]} == {"SchedulingGated"}

    # Both pods of an admitted group kept their native gang link through Kueue's webhook.
    first = core.read_namespaced_pod("first-worker-0", namespace)
    assert first.spec.scheduling_group is not None

    kubectl("delete", "tensorflowjob", "first", "-n", namespace)
    wait_for_state(
        core, namespace, {"second": (2, 0, 2), "third": (2, 2, 0)}, "second admitted, not third"
    )
    wait_for_condition(api_client, namespace, "second", "Running")
    kubectl("delete", "tensorflowjob", "second", "-n", namespace)
    wait_for_state(core, namespace, {"third": (2, 0, 2)}, "third admitted last")
    wait_for_condition(api_client, namespace, "third", "Running")


def test_a_namespace_kueue_does_not_manage_is_left_alone(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, kueue: Kueue
) -> None:
    """No label on the namespace: Kueue's webhook never sees its pods, which run at once."""
    apply(kubectl, namespace, queued_job("unmanaged", "nowhere"))
    wait_for_state(core, namespace, {"unmanaged": (2, 0, 2)}, "its pods placed, ungated")
    pod = core.read_namespaced_pod("unmanaged-worker-0", namespace)
    assert "kueue.x-k8s.io/managed" not in (pod.metadata.finalizers or [])
