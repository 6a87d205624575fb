"""The operator is stateless between passes: stopping and restarting it mid-job loses nothing
and duplicates nothing, because everything it decides comes from the API server."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from tests.support.jobs import (
    apply,
    job_pods,
    kubeflow_job,
    replica,
    wait_for_condition,
    wait_for_pods,
)
from tfjob_localcluster import control
from tfjob_localcluster.operator_process import OperatorProcess

pytestmark = pytest.mark.timeout(180)


def test_restart_mid_job_creates_no_duplicate_and_finishes_right(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    apply(
        kubectl,
        namespace,
        kubeflow_job("resilient", {"Chief": replica(1), "Worker": replica(2), "PS": replica(1)}),
    )
    names = {"resilient-chief-0", "resilient-worker-0", "resilient-worker-1", "resilient-ps-0"}
    before = wait_for_pods(core, namespace, "resilient", names)
    wait_for_condition(api_client, namespace, "resilient", "Running")
    uids = {name: pod.metadata.uid for name, pod in before.items()}

    operator.stop()
    try:
        # While nobody watches, a worker pod is lost (deleted, as a node drain would).
        core.delete_namespaced_pod("resilient-worker-1", namespace)
        control.wait_for_deletion(
            core.list_namespaced_pod, "resilient-worker-1", namespace=namespace
        )
    finally:
        operator.start()

    # Back, the operator creates the lost pod once and leaves the others as they are.
    after = wait_for_pods(core, namespace, "resilient", names)
    assert after["resilient-worker-1"].metadata.uid != uids["resilient-worker-1"]
    assert {n: p.metadata.uid for n, p in after.items() if n != "resilient-worker-1"} == {
        n: uid for n, uid in uids.items() if n != "resilient-worker-1"
    }
    control.end_pod(core, namespace, "resilient-chief-0", exit_code=0)
    job = wait_for_condition(api_client, namespace, "resilient", "Succeeded")
    assert job["status"]["replicaStatuses"]["Chief"]["succeeded"] == 1
    for name in names - {"resilient-chief-0"}:
        control.wait_for_deletion(core.list_namespaced_pod, name, namespace=namespace)
    remaining = job_pods(core, namespace, "resilient")
    assert {n: p.metadata.uid for n, p in remaining.items()} == {
        "resilient-chief-0": uids["resilient-chief-0"]
    }
    # Nothing was created twice: one Scheduled event per pod uid the job ever had.
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=Pod,reason=Scheduled"
    ).items
    assert len(events) == len({e.involved_object.uid for e in events}) == len(names) + 1


def test_job_created_while_the_operator_is_down_starts_once_it_is_back(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    operator.stop()
    try:
        apply(kubectl, namespace, kubeflow_job("late", {"Worker": replica(2)}))
    finally:
        operator.start()
    pods = wait_for_pods(core, namespace, "late", {"late-worker-0", "late-worker-1"})
    uids = {name: pod.metadata.uid for name, pod in pods.items()}
    wait_for_condition(api_client, namespace, "late", "Running")
    # A second restart while pods run: same pods afterwards, none recreated or added. What the
    # test waits for next (Succeeded) only the restarted operator can write.
    operator.restart()
    control.end_pod(core, namespace, "late-worker-0", exit_code=0)
    wait_for_condition(api_client, namespace, "late", "Succeeded")
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=Pod,reason=Scheduled"
    ).items
    scheduled = sorted(e.involved_object.uid for e in events)
    assert scheduled == sorted(uids.values())
