"""suspend, managedBy, scheduleTimeoutSeconds and priorityClass, decided purely. No cluster."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.support.factories import NOW, conditions, job, pod, run, settle

pytestmark = pytest.mark.timeout(20)


def spec(workers: int = 2, **run_policy: Any) -> dict[str, Any]:
    return {
        "tfReplicaSpecs": {
            "Worker": {
                "replicas": workers,
                "restartPolicy": "ExitCode",
                "template": {"spec": {"containers": [{"name": "tensorflow", "image": "tf"}]}},
            }
        },
        "runPolicy": run_policy,
    }


def later(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


# ----- suspend --------------------------------------------------------------------------------
def test_a_new_suspended_job_creates_no_pod_and_says_so() -> None:
    decision = run(job(spec(suspend=True)), service=False)
    assert decision.create == []
    assert conditions(decision)["Suspended"] == ("True", "TFJobSuspended")
    assert decision.state == "Suspended"
    assert "startTime" not in decision.status
    assert [e.reason for e in decision.events] == ["TFJobCreated", "TFJobSuspended"]


def test_suspending_a_running_job_deletes_its_pods_and_pauses_its_deadline() -> None:
    running = [pod("worker", 0), pod("worker", 1)]
    body = settle(job(spec(activeDeadlineSeconds=60)), run(job(spec()), running))
    body["spec"] = spec(suspend=True, activeDeadlineSeconds=60, cleanPodPolicy="None")
    decision = run(body, running, now=later(30))
    assert sorted(p.name for p in decision.delete) == ["mnist-worker-0", "mnist-worker-1"]
    assert conditions(decision)["Suspended"] == ("True", "TFJobSuspended")
    assert conditions(decision)["Running"] == ("False", "TFJobSuspended")
    assert decision.status["replicaStatuses"]["Worker"]["active"] == 0
    assert "startTime" not in decision.status
    assert decision.look_again_after is None  # no deadline runs while suspended
    # Long past the deadline, still suspended: nothing fails.
    body = settle(body, decision)
    idle = run(body, [], now=later(600))
    assert idle.status is None  # unchanged: still Suspended, nothing failed
    assert idle.state == "Suspended"


def test_resuming_creates_the_pods_again_and_restarts_the_clock() -> None:
    body = job(spec(suspend=True, activeDeadlineSeconds=60))
    body = settle(body, run(body))
    body["spec"] = spec(suspend=False, activeDeadlineSeconds=60)
    resumed = later(500)
    decision = run(body, now=resumed)
    assert [o["metadata"]["name"] for o in decision.create if o["kind"] == "Pod"] == [
        "mnist-worker-0",
        "mnist-worker-1",
    ]
    assert conditions(decision)["Suspended"] == ("False", "TFJobResumed")
    assert decision.status["startTime"] == resumed.isoformat().replace("+00:00", "Z")
    assert "TFJobResumed" in [e.reason for e in decision.events]
    assert decision.look_again_after == pytest.approx(60)


def test_a_finished_job_stays_finished_when_suspended() -> None:
    body = job(spec(workers=1))
    body = settle(body, run(body, [pod("worker", 0, "Succeeded")]))
    body["spec"] = spec(workers=1, suspend=True)
    decision = run(body, [pod("worker", 0, "Succeeded")])
    assert decision.status is None
    assert decision.delete == []


# ----- managedBy ------------------------------------------------------------------------------
def test_a_job_managed_by_multikueue_is_left_untouched() -> None:
    decision = run(job(spec(managedBy="kueue.x-k8s.io/multikueue")), service=False)
    assert decision.create == []
    assert decision.status is None
    assert decision.events == []


def test_a_job_managed_by_this_operator_runs() -> None:
    decision = run(job(spec(managedBy="tfjob.dev/operator")), service=False)
    assert len(decision.create) == 3


# ----- scheduleTimeoutSeconds -----------------------------------------------------------------
def unschedulable(index: int) -> Any:
    return pod(
        "worker",
        index,
        "Pending",
        waiting_reason="Unschedulable",
        waiting_message="0/7 nodes are available: 3 Insufficient nvidia.com/gpu.",
    )


def test_schedule_timeout_fails_a_job_whose_pods_do_not_all_run_in_time() -> None:
    timeout = {"schedulingPolicy": {"scheduleTimeoutSeconds": 20}}
    body = job(spec(**timeout))
    body = settle(body, run(body, [pod("worker", 0), unschedulable(1)]))
    early = run(body, [pod("worker", 0), unschedulable(1)], now=later(5))
    assert early.look_again_after == pytest.approx(15)
    decision = run(body, [pod("worker", 0), unschedulable(1)], now=later(20))
    assert conditions(decision)["Failed"] == ("True", "ScheduleTimeoutExceeded")
    message = next(c for c in decision.status["conditions"] if c["type"] == "Failed")["message"]
    assert "scheduleTimeoutSeconds (20 s)" in message
    assert "mnist-worker-1: Unschedulable: 0/7 nodes are available" in message
    # The worker holding its GPU while waiting for its peer is stopped.
    assert sorted(p.name for p in decision.delete) == ["mnist-worker-0", "mnist-worker-1"]


def test_schedule_timeout_is_met_once_every_pod_runs() -> None:
    body = job(spec(schedulingPolicy={"scheduleTimeoutSeconds": 20}))
    body = settle(body, run(body, [pod("worker", 0), pod("worker", 1)]))
    decision = run(body, [pod("worker", 0), pod("worker", 1)], now=later(600))
    assert decision.status is None
    assert decision.look_again_after is None


# ----- priorityClass --------------------------------------------------------------------------
def test_priority_class_goes_to_pods_whose_template_names_none() -> None:
    body = job(spec(schedulingPolicy={"priorityClass": "training-high"}))
    body["spec"]["tfReplicaSpecs"]["PS"] = {
        "replicas": 1,
        "template": {
            "spec": {
                "priorityClassName": "own",
                "containers": [{"name": "tensorflow", "image": "tf"}],
            }
        },
    }
    decision = run(body, service=False)
    classes = {
        o["metadata"]["name"]: o["spec"].get("priorityClassName")
        for o in decision.create
        if o["kind"] == "Pod"
    }
    assert classes == {
        "mnist-worker-0": "training-high",
        "mnist-worker-1": "training-high",
        "mnist-ps-0": "own",
    }


@pytest.mark.parametrize(
    "field",
    ["activeDeadlineSeconds", "ttlSecondsAfterFinished", "scheduleTimeoutSeconds"],
)
def test_a_time_limit_past_the_end_of_the_calendar_is_never_reached(field: str) -> None:
    """Found by fuzzing: activeDeadlineSeconds of 251,606,260,800 (8,000 years) overflowed the
    date arithmetic and every pass over the job raised. Any int64 is valid, as in Kubernetes."""
    huge = 2**62
    policy: dict[str, Any] = (
        {"schedulingPolicy": {"scheduleTimeoutSeconds": huge}}
        if "schedule" in field
        else {field: huge}
    )
    body = job(spec(**policy))
    started = settle(body, run(body))
    running = run(started, [pod("worker", 0), pod("worker", 1)], now=later(10))
    assert running.state == "Running"
    assert running.look_again_after is None
    finished = settle(
        started, run(started, [pod("worker", 0, "Succeeded"), pod("worker", 1)], now=later(20))
    )
    done = run(finished, [], service=False, now=later(30))
    assert not done.delete_job
