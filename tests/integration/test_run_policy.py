"""runPolicy's time limits on the real control plane, timed by the job's own status timestamps:
activeDeadlineSeconds fails a job on time and stops its pods, ttlSecondsAfterFinished deletes a
finished job on time, and both hold across an operator restart. And a job whose pods cannot
start says why."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from kubernetes import client as k8s

from tests.support.install import session_operator_stopped
from tests.support.jobs import (
    apply,
    condition,
    get_job,
    job_pods,
    kubeflow_job,
    replica,
    wait_for_condition,
    wait_for_job,
    wait_for_pods,
)
from tfjob_localcluster import control, processes
from tfjob_localcluster.operator_process import OperatorProcess

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def timestamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_past(moment: dt.datetime, what: str) -> None:
    """Wait until a second after ``moment`` (a time the status gives) has passed."""
    processes.wait_until(
        lambda: dt.datetime.now(dt.UTC) > moment + dt.timedelta(seconds=1),
        timeout=30,
        what=what,
        interval=0.2,
    )


def deadline_job(name: str, seconds: int, **policy: object) -> dict:
    return kubeflow_job(
        name, {"Worker": replica(2)}, runPolicy={"activeDeadlineSeconds": seconds, **policy}
    )


def test_active_deadline_fails_a_running_job_within_a_second_and_stops_its_pods(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, deadline_job("late", 4, cleanPodPolicy="None"))
    wait_for_pods(core, namespace, "late", {"late-worker-0", "late-worker-1"})
    wait_for_condition(api_client, namespace, "late", "Running", timeout=30)
    job = wait_for_condition(api_client, namespace, "late", "Failed", timeout=30)
    failed = condition(job, "Failed")
    assert failed is not None
    assert failed["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds (4 s)" in failed["message"]
    status = job["status"]
    active = timestamp(status["completionTime"]) - timestamp(status["startTime"])
    assert dt.timedelta(seconds=4) <= active <= dt.timedelta(seconds=5), active
    # Its running pods are stopped although cleanPodPolicy None keeps finished jobs' pods.
    for pod in ("late-worker-0", "late-worker-1"):
        control.wait_for_deletion(core.list_namespaced_pod, pod, namespace=namespace, timeout=30)
    control.wait_for(
        core.list_namespaced_event,
        lambda items: [e for e in items if e.reason == "DeadlineExceeded"] or None,
        timeout=30,
        what="a DeadlineExceeded event",
        namespace=namespace,
        field_selector="involvedObject.name=late,involvedObject.kind=TensorFlowJob",
    )


def test_ttl_deletes_a_finished_job_within_a_second(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        kubeflow_job("brief", {"Worker": replica(1)}, runPolicy={"ttlSecondsAfterFinished": 3}),
    )
    wait_for_pods(core, namespace, "brief", {"brief-worker-0"})
    control.end_pod(core, namespace, "brief-worker-0", exit_code=0)
    job = wait_for_condition(api_client, namespace, "brief", "Succeeded", timeout=30)
    completed = timestamp(job["status"]["completionTime"])
    wait_for_job(api_client, namespace, "brief", lambda job: job is None, "deleted", 30)
    gone_after = dt.datetime.now(dt.UTC) - completed
    assert dt.timedelta(seconds=3) <= gone_after <= dt.timedelta(seconds=4.5), gone_after


def test_the_deadline_holds_across_an_operator_restart(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    apply(kubectl, namespace, deadline_job("patient", 5))
    wait_for_pods(core, namespace, "patient", {"patient-worker-0", "patient-worker-1"})
    job = wait_for_condition(api_client, namespace, "patient", "Running", timeout=30)
    due = timestamp(job["status"]["startTime"]) + dt.timedelta(seconds=5)
    with session_operator_stopped(operator):
        # No operator runs when the deadline passes: nothing in memory can remember it.
        wait_past(due, "the deadline to pass with the operator stopped")
        restarted = time.monotonic()
    job = wait_for_condition(api_client, namespace, "patient", "Failed", timeout=30)
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
    assert timestamp(job["status"]["completionTime"]) >= due
    assert time.monotonic() - restarted < 30


def test_the_ttl_holds_across_an_operator_restart(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    apply(
        kubectl,
        namespace,
        kubeflow_job("fleeting", {"Worker": replica(1)}, runPolicy={"ttlSecondsAfterFinished": 2}),
    )
    wait_for_pods(core, namespace, "fleeting", {"fleeting-worker-0"})
    with session_operator_stopped(operator):
        control.end_pod(core, namespace, "fleeting-worker-0", exit_code=0)
        control.wait_for_pod_phase(core, namespace, "fleeting-worker-0", "Succeeded")
    # The job finished while nobody watched; the operator back records it, then deletes it.
    job = wait_for_condition(api_client, namespace, "fleeting", "Succeeded", timeout=30)
    due = timestamp(job["status"]["completionTime"]) + dt.timedelta(seconds=2)
    with session_operator_stopped(operator):
        # No operator runs when the TTL runs out: nothing in memory can remember it.
        wait_past(due, "the TTL to run out with the operator stopped")
        assert get_job(api_client, namespace, "fleeting")["metadata"]["name"] == "fleeting"
        restarted = time.monotonic()
    wait_for_job(api_client, namespace, "fleeting", lambda job: job is None, "deleted", 30)
    assert time.monotonic() - restarted < 30


def test_a_job_that_cannot_start_says_why_on_its_status(
    kubectl, api_client: k8s.ApiClient, namespace: str
) -> None:
    """No simulated node has 9 GPUs: the scheduler's reason reaches the job's status."""
    apply(kubectl, namespace, kubeflow_job("greedy", {"Worker": replica(1, gpus=9)}))
    job = wait_for_job(
        api_client,
        namespace,
        "greedy",
        lambda job: bool(job and (job.get("status") or {}).get("waiting")),
        "its status saying why its pod waits",
    )
    assert job is not None
    (waiting,) = job["status"]["waiting"]
    assert waiting["pod"] == "greedy-worker-0"
    assert waiting["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in waiting["message"]
    assert job["status"]["state"] == "Created"


def test_schedule_timeout_fails_a_job_whose_pods_cannot_all_run_and_stops_the_rest(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """The chief fits, the worker (9 GPUs) fits no node: on time the job fails with the
    scheduler's words, and the chief no longer holds its node waiting for a peer. (A gang of
    one, `minAvailable: 1`, lets the chief start alone, as on a cluster without gangs.)"""
    apply(
        kubectl,
        namespace,
        kubeflow_job(
            "stuck",
            {"Chief": replica(1), "Worker": replica(1, gpus=9)},
            runPolicy={"schedulingPolicy": {"scheduleTimeoutSeconds": 3, "minAvailable": 1}},
        ),
    )
    control.wait_for_pod_phase(core, namespace, "stuck-chief-0", "Running")
    job = wait_for_condition(api_client, namespace, "stuck", "Failed", timeout=30)
    failed = condition(job, "Failed")
    assert failed["reason"] == "ScheduleTimeoutExceeded"
    assert "stuck-worker-0: Unschedulable:" in failed["message"]
    assert "Insufficient nvidia.com/gpu" in failed["message"]
    waited = timestamp(job["status"]["completionTime"]) - timestamp(job["status"]["startTime"])
    assert dt.timedelta(seconds=3) <= waited <= dt.timedelta(seconds=4), waited
    for pod in ("stuck-chief-0", "stuck-worker-0"):
        control.wait_for_deletion(core.list_namespaced_pod, pod, namespace=namespace, timeout=30)


def test_suspend_stops_a_running_job_and_resume_starts_it_again(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    names = {"nap-worker-0", "nap-worker-1"}
    apply(kubectl, namespace, deadline_job("nap", 3600))
    first = wait_for_pods(core, namespace, "nap", names)
    running = wait_for_condition(api_client, namespace, "nap", "Running", timeout=30)
    kubectl(
        "patch", "tensorflowjob", "nap", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"runPolicy":{"suspend":true}}}',
    )  # fmt: skip
    job = wait_for_condition(api_client, namespace, "nap", "Suspended", timeout=30)
    assert condition(job, "Suspended")["reason"] == "TFJobSuspended"
    assert job["status"]["state"] == "Suspended"
    assert "startTime" not in job["status"]
    for pod in names:
        control.wait_for_deletion(core.list_namespaced_pod, pod, namespace=namespace, timeout=30)

    kubectl(
        "patch", "tensorflowjob", "nap", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"runPolicy":{"suspend":false}}}',
    )  # fmt: skip
    again = wait_for_pods(core, namespace, "nap", names)
    assert {p.metadata.uid for p in again.values()}.isdisjoint(
        p.metadata.uid for p in first.values()
    )
    job = wait_for_condition(api_client, namespace, "nap", "Running", timeout=30)
    suspended = next(c for c in job["status"]["conditions"] if c["type"] == "Suspended")
    assert (suspended["status"], suspended["reason"]) == ("False", "TFJobResumed")
    assert timestamp(job["status"]["startTime"]) > timestamp(running["status"]["startTime"])
    reasons = control.wait_for(
        core.list_namespaced_event,
        lambda items: (
            {e.reason for e in items}
            if {"TFJobSuspended", "TFJobResumed"} <= {e.reason for e in items}
            else None
        ),
        timeout=30,
        what="TFJobSuspended and TFJobResumed events",
        namespace=namespace,
        field_selector="involvedObject.name=nap,involvedObject.kind=TensorFlowJob",
    )
    assert reasons


def test_a_suspended_new_job_creates_nothing_until_resumed(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, deadline_job("queued", 3600, suspend=True))
    job = wait_for_condition(api_client, namespace, "queued", "Suspended", timeout=30)
    assert "startTime" not in job["status"]
    assert job_pods(core, namespace, "queued") == {}
    kubectl(
        "patch", "tensorflowjob", "queued", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"runPolicy":{"suspend":false}}}',
    )  # fmt: skip
    wait_for_pods(core, namespace, "queued", {"queued-worker-0", "queued-worker-1"})


def test_a_job_managed_by_multikueue_is_untouched_and_the_field_cannot_change(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        kubeflow_job(
            "remote", {"Worker": replica(1)}, runPolicy={"managedBy": "kueue.x-k8s.io/multikueue"}
        ),
    )
    # A job this operator manages, applied after it, gets its status: by then the remote one
    # would have had its own, had the operator touched it.
    apply(kubectl, namespace, kubeflow_job("local", {"Worker": replica(1)}))
    wait_for_condition(api_client, namespace, "local", "Created", timeout=30)
    assert "status" not in get_job(api_client, namespace, "remote")
    assert job_pods(core, namespace, "remote") == {}

    refused = kubectl(
        "patch", "tensorflowjob", "remote", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"runPolicy":{"managedBy":"tfjob.dev/operator"}}}',
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "spec.runPolicy.managedBy cannot change once the job exists" in refused.stderr
