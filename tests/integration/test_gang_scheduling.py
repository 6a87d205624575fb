"""All-or-nothing starts on the real kube-scheduler (1.36, gang scheduling on): two jobs that
each need more than half of a GPU pool never both start partly; a job larger than the pool
waits whole, with the scheduler's words on its status. kwok's nodes hold the GPUs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.support.jobs import (
    apply,
    get_job,
    kubeflow_job,
    replica,
    wait_for_condition,
    wait_for_job,
)
from tests.support.own_cluster import own_cluster
from tfjob_localcluster import control
from tfjob_localcluster.nodepools import NodePool
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

T = TypeVar("T")

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("operator")]

# 4 nodes x 3 GPUs: 12 GPUs, where two 8-GPU jobs would deadlock at 6 + 6.
POOL = NodePool(name="gang", count=4, gpus=3, cpu="32", memory="128Gi")


@pytest.fixture(scope="module")
def gang_pool(core: k8s.CoreV1Api) -> Iterator[str]:
    for node in POOL.node_names():
        core.create_node(POOL.node(node))
    try:
        yield POOL.name
    finally:
        for node in POOL.node_names():
            try:
                core.delete_node(node)
            except ApiException as error:
                if error.status != 404:
                    raise


def workers(name: str, count: int) -> dict:
    return kubeflow_job(
        name,
        {"Worker": replica(count, gpus=1, restartPolicy="Never")},
        nodePool=POOL.name,
    )


def placement(pods: list[k8s.V1Pod]) -> dict[str, tuple[int, int]]:
    """Per job: (its pods, those bound to a node)."""
    counts: dict[str, list[int]] = {}
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        job = (pod.metadata.labels or {}).get("tfjob.dev/job-name", "")
        total, bound = counts.setdefault(job, [0, 0])
        counts[job] = [total + 1, bound + (1 if pod.spec.node_name else 0)]
    return {job: (total, bound) for job, (total, bound) in counts.items()}


def wait_for_placement(
    core: k8s.CoreV1Api,
    namespace: str,
    check: Callable[[dict[str, tuple[int, int]]], T | None],
    what: str,
    timeout: float = 60,
) -> T:
    return control.wait_for(
        core.list_namespaced_pod,
        lambda pods: check(placement(pods)),
        timeout=timeout,
        what=what,
        namespace=namespace,
    )


def waiting_status(api_client: k8s.ApiClient, namespace: str, job: str) -> list[dict]:
    """The job's status.waiting once it leads with the scheduler's reason for the GPUs."""

    def says_why(body: dict | None) -> bool:
        waiting = ((body or {}).get("status") or {}).get("waiting") or []
        return bool(waiting) and "Insufficient nvidia.com/gpu" in waiting[0]["message"]

    found = wait_for_job(api_client, namespace, job, says_why, f"{job}'s status to say why")
    assert found is not None
    return found["status"]["waiting"]


def test_two_jobs_each_over_half_a_pool_start_one_whole_then_the_other(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, gang_pool: str
) -> None:
    apply(kubectl, namespace, workers("first", 8))
    apply(kubectl, namespace, workers("second", 8))
    seen: list[dict[str, tuple[int, int]]] = []

    def one_whole(counts: dict[str, tuple[int, int]]) -> tuple[str, str] | None:
        seen.append(counts)
        if set(counts) != {"first", "second"} or any(t != 8 for t, _ in counts.values()):
            return None
        bound = {job: on for job, (_, on) in counts.items()}
        if sorted(bound.values()) != [0, 8]:
            return None
        running = next(job for job, on in bound.items() if on == 8)
        return running, ({"first", "second"} - {running}).pop()

    running, waiting = wait_for_placement(
        core, namespace, one_whole, "one job placed whole and the other not at all"
    )
    # At no point was one pod of the waiting job bound (without a gang, the scheduler would
    # have split the 12 GPUs between the two, and both would wait for peers for ever).
    assert all(counts.get(waiting, (0, 0))[1] == 0 for counts in seen), seen
    wait_for_condition(api_client, namespace, running, "Running")
    # Its pods wait with the scheduler's reason, and so does the job's status.
    waits = waiting_status(api_client, namespace, waiting)
    assert {entry["reason"] for entry in waits} == {"Unschedulable"}, waits
    # Still whole: not one of its pods is bound while the other runs.
    pods = core.list_namespaced_pod(namespace).items
    assert placement(pods) == {running: (8, 8), waiting: (8, 0)}

    # The first job ends; its GPUs free, the second is placed, whole.
    control.end_pod(core, namespace, f"{running}-worker-0", exit_code=0)
    wait_for_condition(api_client, namespace, running, "Succeeded")
    wait_for_placement(
        core,
        namespace,
        lambda counts: counts.get(waiting) == (8, 8) or None,
        f"{waiting} placed whole once {running} is done",
    )
    wait_for_condition(api_client, namespace, waiting, "Running")


def test_a_job_larger_than_the_pool_waits_whole_with_the_schedulers_reason(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, gang_pool: str
) -> None:
    apply(kubectl, namespace, workers("too-big", 16))
    waits = waiting_status(api_client, namespace, "too-big")
    assert waits[0]["reason"] == "Unschedulable", waits
    assert placement(core.list_namespaced_pod(namespace).items) == {"too-big": (16, 0)}
    assert get_job(api_client, namespace, "too-big")["status"]["state"] == "Created"
    # The PodGroup the operator made for it, owned by the job, asks for all 16 at once.
    groups = k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "scheduling.k8s.io", "v1alpha2", namespace, "podgroups"
    )["items"]
    (group,) = groups
    assert group["spec"]["schedulingPolicy"] == {"gang": {"minCount": 16}}
    assert group["metadata"]["ownerReferences"][0]["name"] == "too-big"


def test_a_pod_replaced_after_the_gang_started_is_placed_alone(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, gang_pool: str
) -> None:
    """A replacement joins a gang that already runs: the scheduler must not wait for the whole
    group to appear again (its peers are running, not queued)."""
    job = kubeflow_job(
        "replaced",
        {"Worker": replica(3, gpus=1, restartPolicy="ExitCode")},
        nodePool=POOL.name,
        runPolicy={"restartScope": "Pod"},
    )
    apply(kubectl, namespace, job)
    wait_for_placement(
        core, namespace, lambda c: c.get("replaced") == (3, 3) or None, "the gang placed"
    )
    wait_for_condition(api_client, namespace, "replaced", "Running")
    old = core.read_namespaced_pod("replaced-worker-1", namespace).metadata.uid
    control.end_pod(core, namespace, "replaced-worker-1", exit_code=137)  # preempted: retried

    def replacement_bound(pods: list[k8s.V1Pod]) -> k8s.V1Pod | None:
        return next(
            (
                p
                for p in pods
                if p.metadata.name == "replaced-worker-1"
                and p.metadata.uid != old
                and p.spec.node_name
                and p.status.phase == "Running"
            ),
            None,
        )

    control.wait_for(
        core.list_namespaced_pod,
        replacement_bound,
        timeout=60,
        what="the replacement of worker 1 running",
        namespace=namespace,
    )
    found = wait_for_job(
        api_client,
        namespace,
        "replaced",
        lambda body: bool(body and body["status"]["replicaStatuses"]["Worker"].get("active") == 3),
        "all 3 workers active again",
    )
    assert found is not None


@pytest.mark.timeout(240)
def test_without_the_api_jobs_start_pod_by_pod_and_the_operator_says_so(
    tmp_path: Path,
) -> None:
    """The control: a cluster without gang scheduling (most of them today). The operator says
    so once and runs jobs as before, so the same two jobs share the pool's 12 GPUs and one of
    them holds GPUs while it waits for peers that cannot be placed."""
    with own_cluster(tmp_path / "cluster", POOL, gang_scheduling=False) as (_, api, operator):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        for name in ("first", "second"):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, workers(name, 8)
            )
        counts = wait_for_placement(
            core,
            "default",
            # Each job's 8 pods made (their creates go out in batches), 12 of them placed.
            lambda c: (
                c
                if sum(bound for _, bound in c.values()) == 12
                and sorted(total for total, _ in c.values()) == [8, 8]
                else None
            ),
            "both jobs' pods made and the pool's 12 GPUs taken",
        )
        assert any(0 < bound < 8 for _, bound in counts.values()), counts
        pods = core.list_namespaced_pod("default").items
        assert all(pod.spec.scheduling_group is None for pod in pods)
        log = operator.log()
        assert log.count("the cluster serves no PodGroup API") == 1, log[-3000:]
