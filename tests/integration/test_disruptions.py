"""What clusters do to running jobs, through the real mechanisms on the real control plane:
the Eviction API (kubectl drain), a graceful and a forced `kubectl delete pod`, kube-scheduler
preempting for a higher-priority pod. A collective restarts whole as its next attempt, however
its peers end after it; a parameter-server job replaces a worker alone and restarts whole for a
parameter server; none of it spends backoffLimit. And a failure is counted once, whether the
operator's delete of its pod is refused or the operator is SIGKILLed before it lands."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.support.admission import DeletesRefused
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
from tfjob_localcluster import control
from tfjob_localcluster.operator_process import OperatorProcess
from tfjob_operator.api.labels import ATTEMPT_LABEL

pytestmark = [pytest.mark.timeout(150), pytest.mark.usefixtures("operator")]


def evict(core: k8s.CoreV1Api, namespace: str, name: str) -> None:
    """What kubectl drain does to each pod of the node."""
    core.create_namespaced_pod_eviction(
        name,
        namespace,
        k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=name, namespace=namespace)),
    )


def end_quietly(core: k8s.CoreV1Api, namespace: str, pod: k8s.V1Pod, exit_code: int) -> None:
    """A peer's exit after the collective broke: that pod's, by uid (the operator may have
    stopped it and made the next attempt's pod under its name already)."""
    body = {
        "metadata": {"uid": pod.metadata.uid, "annotations": {control.EXIT_CODE: str(exit_code)}}
    }
    with contextlib.suppress(k8s.exceptions.ApiException):
        core.patch_namespaced_pod(pod.metadata.name, namespace, body)


def attempt_of(pod: k8s.V1Pod) -> str:
    return pod.metadata.labels[ATTEMPT_LABEL]


def running_again(api_client: k8s.ApiClient, namespace: str, name: str, attempt: int) -> dict:
    try:
        job = wait_for_job(
            api_client,
            namespace,
            name,
            lambda job: bool(
                job
                and (job["status"].get("attempt") or 1) == attempt
                and condition(job, "Running")
                and not condition(job, "Restarting")
            ),
            f"attempt {attempt} running",
            timeout=90,
        )
    except control.WaitTimeout:
        core = k8s.CoreV1Api(api_client)
        print("job status:", get_job(api_client, namespace, name).get("status"))
        for pod in job_pods(core, namespace, name).values():
            print("pod:", pod.metadata.name, pod.metadata.labels, pod.status.phase)
        raise
    assert job is not None
    return job


def restart_events(core: k8s.CoreV1Api, namespace: str, name: str) -> list[str]:
    """The job's TFJobRestarting events, once there is one (posted after the status write)."""
    return control.wait_for(
        core.list_namespaced_event,
        lambda items: [e.message for e in items if e.reason == "TFJobRestarting"] or None,
        timeout=30,
        what=f"a TFJobRestarting event of {name}",
        namespace=namespace,
        field_selector=f"involvedObject.name={name}",
    )


Disruption = Callable[[k8s.CoreV1Api, Any, str, str], None]
DISRUPTIONS: dict[str, Disruption] = {
    "evicted": lambda core, kubectl, namespace, pod: evict(core, namespace, pod),
    "deleted": lambda core, kubectl, namespace, pod: core.delete_namespaced_pod(pod, namespace),
    "force-deleted": lambda core, kubectl, namespace, pod: kubectl(
        "delete", "pod", pod, "-n", namespace, "--grace-period=0", "--force", "--wait=false"
    ),
}
SAYS = {
    "evicted": "was evicted",
    "deleted": "was deleted by someone other than the operator",
    "force-deleted": "was deleted by someone other than the operator",
}


@pytest.mark.parametrize("how", list(DISRUPTIONS))
@pytest.mark.parametrize("policy", ["ExitCode", "Never"])
def test_a_collective_restarts_whole_as_its_next_attempt_and_keeps_its_retry_budget(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, how: str, policy: str
) -> None:
    """Worker 1 is taken; worker 0's collective breaks and it exits 1 at once. With
    backoffLimit 0 and whatever the restartPolicy (Never too: the script did not fail), the
    job runs again as attempt 2, both workers new, the disruption counted apart."""
    name = f"{how[:5]}-{policy.lower()}"
    job = kubeflow_job(
        name, {"Worker": replica(2, restartPolicy=policy)}, runPolicy={"backoffLimit": 0}
    )
    apply(kubectl, namespace, job)
    before = wait_for_pods(core, namespace, name, {f"{name}-worker-0", f"{name}-worker-1"})
    wait_for_condition(api_client, namespace, name, "Running")
    DISRUPTIONS[how](core, kubectl, namespace, f"{name}-worker-1")
    end_quietly(core, namespace, before[f"{name}-worker-0"], exit_code=1)

    job = running_again(api_client, namespace, name, attempt=2)
    assert not condition(job, "Failed")
    counts = job["status"]["replicaStatuses"]["Worker"]
    assert counts.get("disruptions") == 1, counts
    assert "restarts" not in counts, counts
    after = wait_for_pods(core, namespace, name, {f"{name}-worker-0", f"{name}-worker-1"})
    assert {attempt_of(p) for p in after.values()} == {"2"}
    assert not {p.metadata.uid for p in after.values()} & {p.metadata.uid for p in before.values()}
    (message,) = restart_events(core, namespace, name)
    assert f"Worker 1 (pod {name}-worker-1) {SAYS[how]}" in message
    assert "backoffLimit is not spent" in message


def test_a_worker_preempted_by_kube_scheduler_restarts_the_collective(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """A pod of higher priority needs worker 1's node: kube-scheduler evicts worker 1
    (DisruptionTarget PreemptionByScheduler) and binds the pod there."""
    scheduling = k8s.SchedulingV1Api(api_client)
    priority = f"urgent-{namespace}"
    scheduling.create_priority_class(
        k8s.V1PriorityClass(metadata=k8s.V1ObjectMeta(name=priority), value=1_000_000)
    )
    try:
        # Three of a T4 node's four GPUs each: the workers land on the pool's two nodes.
        job = kubeflow_job(
            "preempted",
            {"Worker": replica(2, gpus=3, restartPolicy="ExitCode")},
            nodePool="gpu-t4",
        )
        apply(kubectl, namespace, job)
        pods = wait_for_pods(
            core, namespace, "preempted", {"preempted-worker-0", "preempted-worker-1"}
        )
        wait_for_condition(api_client, namespace, "preempted", "Running")
        node = pods["preempted-worker-1"].spec.node_name
        urgent = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "urgent"},
            "spec": {
                "priorityClassName": priority,
                "nodeSelector": {"kubernetes.io/hostname": node},
                "tolerations": [{"operator": "Exists"}],
                "containers": [
                    {
                        "name": "main",
                        "image": "urgent:test",
                        "resources": {"limits": {"nvidia.com/gpu": 4}},
                    }
                ],
            },
        }
        apply(kubectl, namespace, urgent)
        job = wait_for_job(
            api_client,
            namespace,
            "preempted",
            lambda job: bool(job and job["status"].get("attempt") == 2),
            "attempt 2",
            timeout=60,
        )
        counts = job["status"]["replicaStatuses"]["Worker"]
        assert counts.get("disruptions") == 1, counts
        (message,) = restart_events(core, namespace, "preempted")
        assert "Worker 1 (pod preempted-worker-1) was preempted by kube-scheduler" in message
        control.wait_for_pod_phase(core, namespace, "urgent", "Running", timeout=60)
        # Attempt 2 needs both nodes: it runs once the urgent pod is done.
        core.delete_namespaced_pod("urgent", namespace, grace_period_seconds=0)
        running_again(api_client, namespace, "preempted", attempt=2)
    finally:
        scheduling.delete_priority_class(priority)


@pytest.mark.parametrize("scope", ["Job", "Pod"])
def test_a_succeeded_worker_the_pod_gc_removes_is_not_missed_nor_run_again(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, scope: str
) -> None:
    """Past --terminated-pod-gc-threshold (12,500 ended pods by default, so every busy cluster
    that keeps its history) the pod garbage collector force-deletes ended pods, a succeeded
    worker of a job that still runs among them. Found at 5,000 jobs: every such collective
    restarted. Its success stands on the status instead; the job goes on and succeeds."""
    name = f"gc-{scope.lower()}"
    job = kubeflow_job(name, {"Worker": replica(3)}, runPolicy={"restartScope": scope})
    apply(kubectl, namespace, job)
    names = {f"{name}-worker-{i}" for i in range(3)}
    before = wait_for_pods(core, namespace, name, names)
    wait_for_condition(api_client, namespace, name, "Running")
    end_quietly(core, namespace, before[f"{name}-worker-1"], exit_code=0)
    control.wait_for_pod_phase(core, namespace, f"{name}-worker-1", "Succeeded")
    # What the pod garbage collector does: a delete with no grace period.
    core.delete_namespaced_pod(f"{name}-worker-1", namespace, grace_period_seconds=0)

    def recorded(job: dict | None) -> bool:
        counts = ((job or {}).get("status") or {}).get("replicaStatuses", {}).get("Worker", {})
        return counts.get("completedIndexes") == "1"

    wait_for_job(api_client, namespace, name, recorded, "worker 1's success recorded", 30)
    # Worker 2 ends too, then worker 0, which decides.
    end_quietly(core, namespace, before[f"{name}-worker-2"], exit_code=0)
    control.wait_for_pod_phase(core, namespace, f"{name}-worker-2", "Succeeded")
    end_quietly(core, namespace, before[f"{name}-worker-0"], exit_code=0)
    job = wait_for_condition(api_client, namespace, name, "Succeeded")
    assert (job["status"].get("attempt") or 1) == 1
    assert not condition(job, "Restarting")
    counts = job["status"]["replicaStatuses"]["Worker"]
    assert counts.get("disruptions") is None, counts
    assert counts["succeeded"] == 3, counts
    left = job_pods(core, namespace, name)
    assert f"{name}-worker-1" not in left  # not made again: it had done its part
    for kept in (0, 2):
        uid = before[f"{name}-worker-{kept}"].metadata.uid
        assert left[f"{name}-worker-{kept}"].metadata.uid == uid


def ps_job(name: str) -> dict:
    return kubeflow_job(
        name,
        {
            "Chief": replica(1, restartPolicy="ExitCode"),
            "PS": replica(1, restartPolicy="ExitCode"),
            "Worker": replica(2, restartPolicy="ExitCode"),
        },
    )


def test_a_parameter_server_job_replaces_an_evicted_worker_alone(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, ps_job("coord"))
    names = {"coord-chief-0", "coord-ps-0", "coord-worker-0", "coord-worker-1"}
    before = wait_for_pods(core, namespace, "coord", names)
    wait_for_condition(api_client, namespace, "coord", "Running")
    evict(core, namespace, "coord-worker-0")

    def replaced(job: dict | None) -> bool:
        counts = ((job or {}).get("status") or {}).get("replicaStatuses", {}).get("Worker", {})
        return counts.get("disruptions") == 1 and counts.get("active") == 2

    job = wait_for_job(api_client, namespace, "coord", replaced, "worker 0 replaced", 60)
    assert (job["status"].get("attempt") or 1) == 1
    after = wait_for_pods(core, namespace, "coord", names)
    assert after["coord-worker-0"].metadata.uid != before["coord-worker-0"].metadata.uid
    # The coordinator and the variables went on.
    for kept in ("coord-chief-0", "coord-ps-0", "coord-worker-1"):
        assert after[kept].metadata.uid == before[kept].metadata.uid


def test_a_parameter_server_job_restarts_whole_when_its_ps_is_evicted(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """The variables lived on ps 0: the chief's coordinator cannot go on ("the remote target
    has been disconnected", exit 1), and that consequence does not fail the job."""
    apply(kubectl, namespace, ps_job("vars"))
    names = {"vars-chief-0", "vars-ps-0", "vars-worker-0", "vars-worker-1"}
    before = wait_for_pods(core, namespace, "vars", names)
    wait_for_condition(api_client, namespace, "vars", "Running")
    evict(core, namespace, "vars-ps-0")
    end_quietly(core, namespace, before["vars-chief-0"], exit_code=1)
    job = running_again(api_client, namespace, "vars", attempt=2)
    assert job["status"]["replicaStatuses"]["PS"].get("disruptions") == 1
    after = wait_for_pods(core, namespace, "vars", names)
    assert {attempt_of(p) for p in after.values()} == {"2"}


@pytest.mark.parametrize("fault", ["delete-refused", "operator-sigkilled"])
@pytest.mark.parametrize("scope", ["Pod", "Job"])
def test_a_failure_is_counted_once_whatever_comes_between_the_count_and_the_delete(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    scope: str,
    fault: str,
) -> None:
    """Worker 1's 137 is counted on the status; then an admission policy refuses the
    operator's delete of the pod, pass after pass, and meanwhile the operator either keeps
    retrying or is SIGKILLed (a new one starts once the policy goes, and lists everything
    afresh). backoffLimit 1 makes a second count fail the job. Once the pod can go it is
    replaced (restartScope Pod) or the job runs as attempt 2 (Job), and the failure was
    counted exactly once."""
    job = kubeflow_job(
        "held",
        {"Worker": replica(2, restartPolicy="ExitCode")},
        runPolicy={"restartScope": scope, "backoffLimit": 1},
    )
    apply(kubectl, namespace, job)
    before = wait_for_pods(core, namespace, "held", {"held-worker-0", "held-worker-1"})
    wait_for_condition(api_client, namespace, "held", "Running")
    try:
        with DeletesRefused(api_client, namespace, "held-worker-1"):
            control.end_pod(core, namespace, "held-worker-1", exit_code=137)
            wait_for_job(
                api_client,
                namespace,
                "held",
                lambda job: bool(
                    job and job["status"]["replicaStatuses"]["Worker"].get("restarts") == 1
                ),
                "the failure counted",
            )
            if fault == "operator-sigkilled":
                assert operator.process is not None
                operator.process.stop(grace_seconds=0)  # SIGKILL, between count and delete
            # Passes go on failing to delete it (retried after 1, 2, 4... s); none counts again.
            time.sleep(8)
            held = core.read_namespaced_pod("held-worker-1", namespace)
            assert held.metadata.uid == before["held-worker-1"].metadata.uid
            assert held.metadata.deletion_timestamp is None
    finally:
        operator.start()  # a new one if it was killed; the session's other tests need it
    after = control.wait_for_pod(
        core,
        namespace,
        "held-worker-1",
        lambda p: (
            p.metadata.uid != before["held-worker-1"].metadata.uid and p.status.phase == "Running"
        ),
        timeout=90,
        what="held-worker-1 replaced",
    )
    assert after is not None
    job = running_again(api_client, namespace, "held", 2 if scope == "Job" else 1)
    assert job["status"]["replicaStatuses"]["Worker"]["restarts"] == 1
    assert not condition(job, "Failed")
    assert not job["status"].get("replacing")
    pods = job_pods(core, namespace, "held")
    assert set(pods) == {"held-worker-0", "held-worker-1"}
    if scope == "Job":
        assert {attempt_of(p) for p in pods.values()} == {"2"}
        assert pods["held-worker-0"].metadata.uid != before["held-worker-0"].metadata.uid
    else:
        assert pods["held-worker-0"].metadata.uid == before["held-worker-0"].metadata.uid
