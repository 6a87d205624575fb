"""Restart policies and backoffLimit on the real control plane, kwok pods ended by annotation:
ExitCode replaces a pod killed by a signal under its own name and fails on a permanent code,
the kubelet's restarts under OnFailure are counted, backoffLimit ends it all, and a collective
restarts every pod together as a new attempt."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from tests.support.jobs import (
    apply,
    condition,
    condition_after,
    kubeflow_job,
    replica,
    wait_for_condition,
    wait_for_job,
    wait_for_pods,
)
from tfjob_localcluster import control

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def restart_job(name: str, policy: str = "ExitCode", workers: int = 2, **run_policy: object):
    return kubeflow_job(
        name, {"Worker": replica(workers, restartPolicy=policy)}, runPolicy=run_policy
    )


def events(core: k8s.CoreV1Api, namespace: str, name: str, reason: str, count: int = 1):
    """Wait until the job has ``count`` events of ``reason``; return their messages."""
    return control.wait_for(
        core.list_namespaced_event,
        lambda items: (
            [e.message for e in items if e.reason == reason]
            if sum(e.count or 1 for e in items if e.reason == reason) >= count
            else None
        ),
        timeout=30,
        what=f"{count} {reason} event(s) of {name}",
        namespace=namespace,
        field_selector=f"involvedObject.name={name},involvedObject.kind=TensorFlowJob",
    )


def restarts_of(job: dict, kind: str = "Worker") -> int:
    return job["status"]["replicaStatuses"][kind].get("restarts", 0)


def test_exit_code_replaces_a_killed_pod_under_its_name_then_fails_on_a_permanent_code(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, restart_job("preempt", restartScope="Pod"))
    before = wait_for_pods(core, namespace, "preempt", {"preempt-worker-0", "preempt-worker-1"})
    wait_for_condition(api_client, namespace, "preempt", "Running", timeout=30)
    restarting = condition_after(
        api_client,
        namespace,
        "preempt",
        "Restarting",
        lambda: control.end_pod(
            core, namespace, "preempt-worker-1", exit_code=137, reason="OOMKilled"
        ),
    )
    assert (
        "Worker 1 (pod preempt-worker-1) exited with code 137 (OOMKilled)"
        in (condition(restarting, "Restarting")["message"])
    )
    assert restarts_of(restarting) == 1
    after = wait_for_pods(core, namespace, "preempt", {"preempt-worker-0", "preempt-worker-1"})
    # Worker 1 is a new pod under its old name; worker 0 kept running.
    assert after["preempt-worker-1"].metadata.uid != before["preempt-worker-1"].metadata.uid
    assert after["preempt-worker-0"].metadata.uid == before["preempt-worker-0"].metadata.uid
    job = wait_for_job(
        api_client,
        namespace,
        "preempt",
        lambda job: bool(job and condition(job, "Running") and not condition(job, "Restarting")),
        "running again",
        timeout=30,
    )
    assert job["status"]["state"] == "Running"
    (message,) = events(core, namespace, "preempt", "TFJobRestarting")
    assert "restart 1 of backoffLimit 6" in message

    control.end_pod(core, namespace, "preempt-worker-1", exit_code=2)
    job = wait_for_condition(api_client, namespace, "preempt", "Failed", timeout=30)
    failed = condition(job, "Failed")
    assert failed["reason"] == "TFJobFailed"
    assert "Worker 1 (pod preempt-worker-1) exited with code 2" in failed["message"]
    assert restarts_of(job) == 1


def test_backoff_limit_fails_the_job_at_the_restart_past_it(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, restart_job("flaky", workers=1, backoffLimit=1))
    wait_for_pods(core, namespace, "flaky", {"flaky-worker-0"})
    control.end_pod(core, namespace, "flaky-worker-0", exit_code=143)
    wait_for_job(
        api_client,
        namespace,
        "flaky",
        lambda job: bool(job and restarts_of(job) == 1 and condition(job, "Running")),
        "one restart, running again",
        timeout=30,
    )
    wait_for_pods(core, namespace, "flaky", {"flaky-worker-0"})
    control.end_pod(core, namespace, "flaky-worker-0", exit_code=137, reason="Evicted")
    job = wait_for_condition(api_client, namespace, "flaky", "Failed", timeout=30)
    failed = condition(job, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "runPolicy.backoffLimit is 1" in failed["message"]
    assert "Worker 0 (pod flaky-worker-0) exited with code 137 (Evicted)" in failed["message"]
    assert restarts_of(job) == 1
    events(core, namespace, "flaky", "BackoffLimitExceeded")


def test_on_failure_counts_the_kubelets_restarts_toward_the_limit(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, restart_job("crashy", "OnFailure", workers=1, backoffLimit=1))
    (pod,) = wait_for_pods(core, namespace, "crashy", {"crashy-worker-0"}).values()
    control.end_pod(core, namespace, "crashy-worker-0", exit_code=1)
    job = wait_for_job(
        api_client,
        namespace,
        "crashy",
        lambda job: bool(job and restarts_of(job) == 1),
        "one container restart counted",
        timeout=30,
    )
    assert condition(job, "Running") is not None
    (message,) = events(core, namespace, "crashy", "ContainerRestarted")
    assert "the kubelet restarted its container after exit code 1" in message
    # The kubelet restarted the container in place: the same pod.
    (same,) = wait_for_pods(core, namespace, "crashy", {"crashy-worker-0"}).values()
    assert same.metadata.uid == pod.metadata.uid

    control.wait_for_pod(
        core,
        namespace,
        "crashy-worker-0",
        lambda p: control.EXIT_CODE not in (p.metadata.annotations or {}),
        what="the first exit consumed",
    )
    control.end_pod(core, namespace, "crashy-worker-0", exit_code=1)
    job = wait_for_condition(api_client, namespace, "crashy", "Failed", timeout=30)
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert restarts_of(job) == 2
    # cleanPodPolicy Running (the default) stops the pod the kubelet would restart forever.
    control.wait_for_deletion(
        core.list_namespaced_pod, "crashy-worker-0", namespace=namespace, timeout=30
    )


def test_a_collective_restarts_every_pod_together_as_a_new_attempt(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, restart_job("ring"))
    names = {"ring-worker-0", "ring-worker-1"}
    first = wait_for_pods(core, namespace, "ring", names)
    assert {p.metadata.labels["tfjob.dev/attempt"] for p in first.values()} == {"1"}
    job = condition_after(
        api_client,
        namespace,
        "ring",
        "Restarting",
        lambda: control.end_pod(core, namespace, "ring-worker-1", exit_code=137),
    )
    assert job["status"]["attempt"] == 2
    second = control.wait_for(
        core.list_namespaced_pod,
        lambda pods: (
            {p.metadata.name: p for p in pods}
            if {p.metadata.name for p in pods} == names
            and all(
                p.metadata.labels.get("tfjob.dev/attempt") == "2" and p.status.phase == "Running"
                for p in pods
            )
            else None
        ),
        timeout=60,
        what="both workers running as attempt 2",
        namespace=namespace,
        label_selector="tfjob.dev/job-name=ring",
    )
    # Both are new pods, worker 0 too: it could not have taken its peer back.
    for name in names:
        assert second[name].metadata.uid != first[name].metadata.uid
    (message,) = events(core, namespace, "ring", "TFJobRestarting")
    assert "restarting every pod as attempt 2" in message

    control.end_pod(core, namespace, "ring-worker-0", exit_code=0)
    job = wait_for_condition(api_client, namespace, "ring", "Succeeded", timeout=30)
    assert job["status"]["attempt"] == 2
    assert job["status"]["replicaStatuses"]["Worker"]["succeeded"] == 1
