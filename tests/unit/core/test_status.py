"""A job's status computed from its pods: Kubeflow's conditions, counts, events and freezing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tfjob_operator.api.v1alpha1 import (
    ReplicaSpecs,
    ReplicaType,
    SuccessPolicy,
    TensorFlowJobStatus,
)
from tfjob_operator.core.observed import PodObservation, Problem
from tfjob_operator.core.status import (
    RECORDED,
    JobEvent,
    compute_status,
    index_ranges,
    parse_index_ranges,
    recorded_successes,
)

pytestmark = pytest.mark.timeout(10)

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=10)
MUCH_LATER = NOW + dt.timedelta(hours=2)
TEMPLATE = {"spec": {"containers": [{"name": "tensorflow", "image": "tf:2.21"}]}}
TYPES = {t.value: t for t in ReplicaType}

CREATED_MESSAGE = "TFJob ml/mnist is created."
RUNNING_MESSAGE = "TFJob ml/mnist is running."
SUCCEEDED_MESSAGE = "TFJob ml/mnist successfully completed."


def specs(**counts: int) -> ReplicaSpecs:
    return ReplicaSpecs.model_validate(
        {kind: {"replicas": n, "template": TEMPLATE} for kind, n in counts.items()}
    )


def pod(kind: str, index: int, phase: str, **fields: Any) -> PodObservation:
    replica_type = TYPES[kind]
    return PodObservation(
        name=f"mnist-{replica_type.value.lower()}-{index}",
        replica_type=replica_type,
        index=index,
        phase=phase,
        **fields,
    )


def run(
    replica_specs: ReplicaSpecs | None,
    pods: list[PodObservation],
    *,
    previous: TensorFlowJobStatus | None = None,
    now: dt.datetime = NOW,
    policy: SuccessPolicy = SuccessPolicy.DEFAULT,
    problem: Problem | None = None,
    generation: int | None = 3,
) -> tuple[TensorFlowJobStatus, list[JobEvent]]:
    return compute_status(
        job_name="mnist",
        namespace="ml",
        replica_specs=replica_specs,
        pods=pods,
        previous=previous,
        generation=generation,
        success_policy=policy,
        now=now,
        problem=problem,
    )


def conditions(status: TensorFlowJobStatus) -> dict[str, tuple[str, str]]:
    """Condition type -> (status, reason)."""
    return {c.type.value: (c.status, c.reason) for c in status.conditions or []}


def dumped(status: TensorFlowJobStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True)


# ----- the Kubeflow status matrix ---------------------------------------------------------------

DEFAULT = SuccessPolicy.DEFAULT
ALL_WORKERS = SuccessPolicy.ALL_WORKERS

MATRIX = [
    # (id, replicas, pods as (type, index, phase), success policy, expected state)
    (
        "chief-succeeded-workers-failed",
        {"Chief": 1, "Worker": 2},
        [("Chief", 0, "Succeeded"), ("Worker", 0, "Failed"), ("Worker", 1, "Failed")],
        DEFAULT,
        "Succeeded",
    ),
    (
        "chief-succeeded-ps-still-running",
        {"Chief": 1, "Worker": 1, "PS": 1},
        [("Chief", 0, "Succeeded"), ("Worker", 0, "Running"), ("PS", 0, "Running")],
        DEFAULT,
        "Succeeded",
    ),
    (
        "chief-running-ps-failed",
        {"Chief": 1, "Worker": 2, "PS": 1},
        [
            ("Chief", 0, "Running"),
            ("Worker", 0, "Running"),
            ("Worker", 1, "Running"),
            ("PS", 0, "Failed"),
        ],
        DEFAULT,
        "Failed",
    ),
    (
        "chief-running-worker-failed",
        {"Chief": 1, "Worker": 2},
        [("Chief", 0, "Running"), ("Worker", 0, "Running"), ("Worker", 1, "Failed")],
        DEFAULT,
        "Failed",
    ),
    (
        "chief-failed",
        {"Chief": 1, "Worker": 1},
        [("Chief", 0, "Failed"), ("Worker", 0, "Running")],
        DEFAULT,
        "Failed",
    ),
    (
        "chief-running",
        {"Chief": 1, "Worker": 2},
        [("Chief", 0, "Running"), ("Worker", 0, "Running"), ("Worker", 1, "Pending")],
        DEFAULT,
        "Running",
    ),
    (
        "chief-running-workers-succeeded",
        {"Chief": 1, "Worker": 2},
        [("Chief", 0, "Running"), ("Worker", 0, "Succeeded"), ("Worker", 1, "Succeeded")],
        DEFAULT,
        "Running",
    ),
    (
        "chief-pending-worker-running",
        {"Chief": 1, "Worker": 1},
        [("Chief", 0, "Pending"), ("Worker", 0, "Running")],
        DEFAULT,
        "Created",
    ),
    ("no-pods-yet", {"Chief": 1, "Worker": 2}, [], DEFAULT, "Created"),
    (
        "master-succeeded",
        {"Master": 1, "Worker": 1},
        [("Master", 0, "Succeeded"), ("Worker", 0, "Running")],
        DEFAULT,
        "Succeeded",
    ),
    (
        "master-running",
        {"Master": 1, "Worker": 1},
        [("Master", 0, "Running"), ("Worker", 0, "Running")],
        DEFAULT,
        "Running",
    ),
    (
        "no-chief-worker0-succeeded",
        {"Worker": 3},
        [("Worker", 0, "Succeeded"), ("Worker", 1, "Running"), ("Worker", 2, "Running")],
        DEFAULT,
        "Succeeded",
    ),
    (
        "no-chief-worker0-succeeded-worker1-failed",
        {"Worker": 2},
        [("Worker", 0, "Succeeded"), ("Worker", 1, "Failed")],
        DEFAULT,
        "Succeeded",
    ),
    (
        "no-chief-only-worker1-succeeded",
        {"Worker": 2},
        [("Worker", 0, "Running"), ("Worker", 1, "Succeeded")],
        DEFAULT,
        "Running",
    ),
    (
        "no-chief-worker0-failed",
        {"Worker": 2},
        [("Worker", 0, "Failed"), ("Worker", 1, "Running")],
        DEFAULT,
        "Failed",
    ),
    (
        "all-workers-needs-every-worker",
        {"Worker": 3},
        [("Worker", 0, "Succeeded"), ("Worker", 1, "Succeeded"), ("Worker", 2, "Running")],
        ALL_WORKERS,
        "Running",
    ),
    (
        "all-workers-all-succeeded",
        {"Worker": 3},
        [("Worker", 0, "Succeeded"), ("Worker", 1, "Succeeded"), ("Worker", 2, "Succeeded")],
        ALL_WORKERS,
        "Succeeded",
    ),
    (
        "all-workers-one-failed",
        {"Worker": 2},
        [("Worker", 0, "Succeeded"), ("Worker", 1, "Failed")],
        ALL_WORKERS,
        "Failed",
    ),
    (
        "all-workers-but-the-chief-decides",
        {"Chief": 1, "Worker": 2},
        [("Chief", 0, "Succeeded"), ("Worker", 0, "Running"), ("Worker", 1, "Running")],
        ALL_WORKERS,
        "Succeeded",
    ),
    (
        "evaluator-failed",
        {"Chief": 1, "Worker": 1, "Evaluator": 1},
        [("Chief", 0, "Running"), ("Worker", 0, "Running"), ("Evaluator", 0, "Failed")],
        DEFAULT,
        "Failed",
    ),
    (
        "evaluator-failed-without-chief",
        {"Worker": 2, "Evaluator": 1},
        [("Worker", 0, "Running"), ("Worker", 1, "Running"), ("Evaluator", 0, "Failed")],
        DEFAULT,
        "Failed",
    ),
    (
        "evaluator-succeeded-is-not-job-success",
        {"Chief": 1, "Worker": 1, "Evaluator": 1},
        [("Chief", 0, "Running"), ("Worker", 0, "Running"), ("Evaluator", 0, "Succeeded")],
        DEFAULT,
        "Running",
    ),
]


@pytest.mark.parametrize(
    ("replicas", "pod_phases", "policy", "state"),
    [case[1:] for case in MATRIX],
    ids=[case[0] for case in MATRIX],
)
def test_status_matrix(
    replicas: dict[str, int],
    pod_phases: list[tuple[str, int, str]],
    policy: SuccessPolicy,
    state: str,
) -> None:
    pods = [pod(kind, index, phase) for kind, index, phase in pod_phases]
    status, events = run(specs(**replicas), pods, policy=policy)
    assert status.state == state
    found = conditions(status)
    assert found["Created"] == ("True", "TFJobCreated")
    if state == "Succeeded":
        assert found["Succeeded"] == ("True", "TFJobSucceeded")
        assert "Failed" not in found
        assert status.completion_time == NOW
    elif state == "Failed":
        assert found["Failed"] == ("True", "TFJobFailed")
        assert "Succeeded" not in found
        assert status.completion_time == NOW
    else:
        assert "Succeeded" not in found
        assert "Failed" not in found
        assert status.completion_time is None
    if state == "Running":
        assert found["Running"] == ("True", "TFJobRunning")
    if state == "Created":
        assert "Running" not in found
    true_now = {e.reason for e in events}
    assert true_now == {reason for kind, (flag, reason) in found.items() if flag == "True"}


# ----- failure messages --------------------------------------------------------------------------


def test_failure_message_names_type_index_pod_exit_code_reason_and_message() -> None:
    pods = [
        pod("Chief", 0, "Running"),
        pod("Worker", 0, "Running"),
        pod(
            "Worker",
            1,
            "Failed",
            exit_code=137,
            reason="OOMKilled",
            message="  Container exceeded its memory limit\n",
        ),
    ]
    status, events = run(specs(Chief=1, Worker=2), pods)
    message = (
        "TFJob ml/mnist has failed: Worker 1 (pod mnist-worker-1) exited with code 137 "
        "(OOMKilled): Container exceeded its memory limit"
    )
    (failed,) = [c for c in status.conditions or [] if c.type.value == "Failed"]
    assert failed.message == message
    assert JobEvent("Warning", "TFJobFailed", message) in events


def test_failure_message_without_exit_code() -> None:
    pods = [
        pod("Chief", 0, "Running"),
        pod("PS", 0, "Failed", reason="Evicted", message="The node was low on resource: memory."),
    ]
    status, _ = run(specs(Chief=1, PS=1), pods)
    (failed,) = [c for c in status.conditions or [] if c.type.value == "Failed"]
    assert failed.message == (
        "TFJob ml/mnist has failed: PS 0 (pod mnist-ps-0) failed (Evicted): "
        "The node was low on resource: memory."
    )


def test_failure_message_reports_the_first_failure_by_type_then_index_and_counts_the_rest() -> None:
    pods = [
        pod("Evaluator", 0, "Failed", exit_code=3),
        pod("PS", 0, "Failed", exit_code=2),
        pod("Worker", 2, "Failed", exit_code=1, reason="Error"),
        pod("Worker", 1, "Failed", exit_code=1, reason="Error"),
        pod("Chief", 0, "Running"),
    ]
    status, _ = run(specs(Chief=1, Worker=3, PS=1, Evaluator=1), pods)
    (failed,) = [c for c in status.conditions or [] if c.type.value == "Failed"]
    assert failed.message == (
        "TFJob ml/mnist has failed: Worker 1 (pod mnist-worker-1) exited with code 1 (Error) "
        "(3 more pod(s) failed)"
    )


# ----- a whole life: created, running, succeeded, frozen -------------------------------------


RUNNING_PODS = [
    pod("Chief", 0, "Running", ready=True),
    pod("Worker", 0, "Running", ready=True),
    pod("Worker", 1, "Pending"),
    pod("PS", 0, "Running", ready=True),
]
PS_JOB = specs(Chief=1, Worker=2, PS=1)


def test_golden_status_of_a_running_job() -> None:
    status, events = run(PS_JOB, RUNNING_PODS)
    assert dumped(status) == {
        "state": "Running",
        "ready": "3/4",
        "conditions": [
            {
                "type": "Created",
                "status": "True",
                "reason": "TFJobCreated",
                "message": "TFJob ml/mnist is created.",
                "lastUpdateTime": NOW,
                "lastTransitionTime": NOW,
            },
            {
                "type": "Running",
                "status": "True",
                "reason": "TFJobRunning",
                "message": "TFJob ml/mnist is running.",
                "lastUpdateTime": NOW,
                "lastTransitionTime": NOW,
            },
        ],
        "replicaStatuses": {
            "Chief": {"active": 1, "succeeded": 0, "failed": 0},
            "Worker": {"active": 2, "succeeded": 0, "failed": 0},
            "PS": {"active": 1, "succeeded": 0, "failed": 0},
        },
        "startTime": NOW,
        "observedGeneration": 3,
    }
    assert len(events) == 2
    assert set(events) == {
        JobEvent("Normal", "TFJobCreated", CREATED_MESSAGE),
        JobEvent("Normal", "TFJobRunning", RUNNING_MESSAGE),
    }


def test_same_inputs_twice_give_an_identical_status_and_no_events() -> None:
    first, _ = run(PS_JOB, RUNNING_PODS)
    second, events = run(PS_JOB, RUNNING_PODS, previous=first, now=LATER)
    assert second == first
    assert events == []


def test_status_read_back_from_the_api_server_needs_no_write() -> None:
    first, _ = run(PS_JOB, RUNNING_PODS)
    stored = TensorFlowJobStatus.model_validate(
        first.model_dump(by_alias=True, exclude_none=True, mode="json")
    )
    second, events = run(PS_JOB, RUNNING_PODS, previous=stored, now=LATER)
    assert second.model_dump(by_alias=True, exclude_none=True, mode="json") == first.model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert events == []


def test_golden_status_once_the_chief_succeeded() -> None:
    running, _ = run(PS_JOB, RUNNING_PODS)
    pods = [
        pod("Chief", 0, "Succeeded", exit_code=0, reason="Completed"),
        pod("Worker", 0, "Running", ready=True),
        pod("Worker", 1, "Failed", exit_code=1),
        pod("PS", 0, "Running", ready=True),
    ]
    status, events = run(PS_JOB, pods, previous=running, now=LATER)
    assert dumped(status) == {
        "state": "Succeeded",
        "ready": "2/4",
        "conditions": [
            {
                "type": "Created",
                "status": "True",
                "reason": "TFJobCreated",
                "message": "TFJob ml/mnist is created.",
                "lastUpdateTime": NOW,
                "lastTransitionTime": NOW,
            },
            {
                "type": "Running",
                "status": "False",
                "reason": "TFJobSucceeded",
                "message": "TFJob ml/mnist successfully completed.",
                "lastUpdateTime": LATER,
                "lastTransitionTime": LATER,
            },
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "TFJobSucceeded",
                "message": "TFJob ml/mnist successfully completed.",
                "lastUpdateTime": LATER,
                "lastTransitionTime": LATER,
            },
        ],
        "replicaStatuses": {
            "Chief": {"active": 0, "succeeded": 1, "failed": 0, "completedIndexes": "0"},
            "Worker": {"active": 1, "succeeded": 0, "failed": 1},
            "PS": {"active": 1, "succeeded": 0, "failed": 0},
        },
        "startTime": NOW,
        "completionTime": LATER,
        "observedGeneration": 3,
    }
    assert events == [JobEvent("Normal", "TFJobSucceeded", SUCCEEDED_MESSAGE)]


def test_succeeded_is_frozen_whatever_the_pods_do_next() -> None:
    running, _ = run(PS_JOB, RUNNING_PODS)
    done_pods = [
        pod("Chief", 0, "Succeeded"),
        pod("Worker", 0, "Running", ready=True),
        pod("Worker", 1, "Running", ready=True),
        pod("PS", 0, "Running", ready=True),
    ]
    succeeded, _ = run(PS_JOB, done_pods, previous=running, now=LATER)
    # Cleanup kills the rest: the workers and the PS fail on their way out, the chief goes.
    later_pods = [
        pod("Worker", 0, "Failed", exit_code=137, deleting=True),
        pod("Worker", 1, "Failed", exit_code=143),
        pod("PS", 0, "Failed", exit_code=137),
    ]
    frozen, events = run(PS_JOB, later_pods, previous=succeeded, now=MUCH_LATER)
    assert frozen.state == "Succeeded"
    assert frozen.conditions == succeeded.conditions
    assert frozen.replica_statuses == succeeded.replica_statuses
    assert frozen.completion_time == LATER
    assert frozen.start_time == NOW
    assert events == []


def test_failed_is_frozen_and_a_later_success_does_not_flip_it() -> None:
    failing = [pod("Chief", 0, "Running"), pod("Worker", 0, "Failed", exit_code=1)]
    failed, _ = run(specs(Chief=1, Worker=1), failing)
    assert failed.state == "Failed"
    finished = [pod("Chief", 0, "Succeeded"), pod("Worker", 0, "Failed", exit_code=1)]
    after, events = run(specs(Chief=1, Worker=1), finished, previous=failed, now=LATER)
    assert after.state == "Failed"
    assert after.conditions == failed.conditions
    assert after.replica_statuses == failed.replica_statuses
    assert after.completion_time == NOW
    assert events == []


def test_a_problem_after_the_end_changes_nothing() -> None:
    succeeded, _ = run(specs(Worker=1), [pod("Worker", 0, "Succeeded")])
    after, events = run(
        specs(Worker=1), [], previous=succeeded, now=LATER, problem=Problem("InvalidSpec", "x")
    )
    assert after.state == "Succeeded"
    assert after.conditions == succeeded.conditions
    assert events == []


def test_running_turns_false_when_the_job_fails() -> None:
    running, _ = run(
        specs(Chief=1, Worker=1), [pod("Chief", 0, "Running"), pod("Worker", 0, "Running")]
    )
    failed, events = run(
        specs(Chief=1, Worker=1),
        [pod("Chief", 0, "Running"), pod("Worker", 0, "Failed", exit_code=2)],
        previous=running,
        now=LATER,
    )
    found = conditions(failed)
    assert found["Running"] == ("False", "TFJobFailed")
    assert found["Failed"] == ("True", "TFJobFailed")
    assert failed.state == "Failed"
    assert [e.type for e in events] == ["Warning"]


def test_condition_message_change_keeps_the_transition_time() -> None:
    old = TensorFlowJobStatus.model_validate(
        {
            "conditions": [
                {
                    "type": "Created",
                    "status": "True",
                    "reason": "TFJobCreated",
                    "message": "TFJob mnist was created by an older operator.",
                    "lastUpdateTime": "2025-03-01T11:00:00Z",
                    "lastTransitionTime": "2025-03-01T11:00:00Z",
                }
            ],
            "startTime": "2025-03-01T11:00:00Z",
        }
    )
    status, events = run(PS_JOB, [], previous=old, now=LATER)
    (created,) = status.conditions or []
    assert created.message == CREATED_MESSAGE
    assert created.last_update_time == LATER
    assert created.last_transition_time == dt.datetime(2025, 3, 1, 11, 0, tzinfo=dt.UTC)
    assert events == []  # it was already True


# ----- problems -------------------------------------------------------------------------------


def test_problem_fails_the_job_with_its_reason() -> None:
    problem = Problem("InvalidSpec", "spec.distribution.workerCount: must be at least 1")
    status, events = run(None, [], problem=problem)
    assert status.state == "Failed"
    assert conditions(status) == {
        "Created": ("True", "TFJobCreated"),
        "Failed": ("True", "InvalidSpec"),
    }
    (failed,) = [c for c in status.conditions or [] if c.type.value == "Failed"]
    assert failed.message == "spec.distribution.workerCount: must be at least 1"
    assert status.completion_time == NOW
    assert status.replica_statuses is None
    assert JobEvent("Warning", "InvalidSpec", problem.message) in events


def test_problem_wins_over_running_pods() -> None:
    running, _ = run(PS_JOB, RUNNING_PODS)
    problem = Problem("TFJobFailed", "the API server refused pod mnist-worker-1: quota")
    status, events = run(PS_JOB, RUNNING_PODS, previous=running, now=LATER, problem=problem)
    assert status.state == "Failed"
    assert conditions(status)["Running"] == ("False", "TFJobFailed")
    assert events == [JobEvent("Warning", "TFJobFailed", problem.message)]


# ----- counts, ready, times, generation ---------------------------------------------------------


def test_replica_statuses_count_pods_by_phase() -> None:
    pods = [
        pod("Worker", 0, "Pending"),
        pod("Worker", 1, "Running"),
        pod("Worker", 2, "Running", deleting=True),
        pod("Worker", 3, "Succeeded"),
        pod("Evaluator", 0, "Running"),
        PodObservation(name="stray", replica_type=None, index=None, phase="Running", ready=True),
    ]
    status, _ = run(specs(Worker=5, Evaluator=1, PS=0), pods, policy=ALL_WORKERS)
    assert dumped(status)["replicaStatuses"] == {
        "Worker": {"active": 2, "succeeded": 1, "failed": 0, "completedIndexes": "3"},
        "PS": {"active": 0, "succeeded": 0, "failed": 0},
        "Evaluator": {"active": 1, "succeeded": 0, "failed": 0},
    }


def test_ready_counts_ready_pods_of_the_job_not_deleting_over_desired() -> None:
    pods = [
        pod("Chief", 0, "Running", ready=True),
        pod("Worker", 0, "Running", ready=True, deleting=True),
        pod("Worker", 1, "Running", ready=False),
        PodObservation(name="stray", replica_type=None, index=None, phase="Running", ready=True),
    ]
    status, _ = run(specs(Chief=1, Worker=2, PS=1), pods)
    assert status.ready == "1/4"


def test_start_time_is_kept_from_the_previous_status() -> None:
    earlier = NOW - dt.timedelta(days=1)
    previous = TensorFlowJobStatus(start_time=earlier)
    status, _ = run(PS_JOB, RUNNING_PODS, previous=previous, now=LATER)
    assert status.start_time == earlier


def test_start_time_is_now_on_the_first_pass() -> None:
    status, _ = run(PS_JOB, [])
    assert status.start_time == NOW
    assert status.completion_time is None


@pytest.mark.parametrize("generation", [1, 7, None])
def test_observed_generation_is_the_one_given(generation: int | None) -> None:
    status, _ = run(PS_JOB, RUNNING_PODS, generation=generation)
    assert status.observed_generation == generation


def test_observed_generation_follows_a_new_generation() -> None:
    first, _ = run(PS_JOB, RUNNING_PODS, generation=1)
    second, _ = run(PS_JOB, RUNNING_PODS, previous=first, generation=2, now=LATER)
    assert second.observed_generation == 2


# ----- PodObservation.from_pod ------------------------------------------------------------------


POD_UID = "6a1e0f7c-2c4b-4f5e-9d1a-3b2c1d0e9f8a"
JOB_UID = "0b5d9c2e-7f3a-4e1b-8c6d-2a9f4e7b1c3d"


def api_pod(name: str, kind: str, index: str, status: dict[str, Any] | None, **meta: Any) -> dict:
    """A pod as the Kubernetes API returns it (camelCase keys)."""
    pod_dict: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": POD_UID,
            "ownerReferences": [
                {"kind": "ConfigMap", "name": "not-the-controller", "uid": "0"},
                {"kind": "TensorFlowJob", "name": "mnist", "uid": JOB_UID, "controller": True},
            ],
            "annotations": {"tfjob.dev/spec-hash": "5f1c0aa3b2d4e6f7"},
            "labels": {
                "tfjob.dev/job-name": "mnist",
                "tfjob.dev/replica-type": kind,
                "tfjob.dev/replica-index": index,
            },
            **meta,
        },
        "spec": {"containers": [{"name": "tensorflow", "image": "tf:2.21"}]},
    }
    if status is not None:
        pod_dict["status"] = status
    return pod_dict


READY_CONDITIONS = [
    {"type": "PodReadyToStartContainers", "status": "True"},
    {"type": "Initialized", "status": "True"},
    {"type": "Ready", "status": "True"},
    {"type": "ContainersReady", "status": "True"},
    {"type": "PodScheduled", "status": "True"},
]


def test_from_pod_of_a_running_ready_worker() -> None:
    raw = api_pod(
        "mnist-worker-1",
        "worker",
        "1",
        {
            "phase": "Running",
            "conditions": READY_CONDITIONS,
            "hostIP": "10.0.0.4",
            "podIP": "10.244.1.7",
            "startTime": "2025-03-01T12:00:00Z",
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "image": "tf:2.21",
                    "imageID": "docker.io/tf@sha256:abc",
                    "state": {"running": {"startedAt": "2025-03-01T12:00:05Z"}},
                }
            ],
        },
    )
    assert PodObservation.from_pod(raw) == PodObservation(
        name="mnist-worker-1",
        replica_type=ReplicaType.WORKER,
        index=1,
        phase="Running",
        ready=True,
        deleting=False,
        exit_code=None,
        reason=None,
        message=None,
        uid=POD_UID,
        owner_uid=JOB_UID,
        spec_hash="5f1c0aa3b2d4e6f7",
    )


def test_from_pod_just_created_has_no_status() -> None:
    observed = PodObservation.from_pod(api_pod("mnist-ps-0", "ps", "0", None))
    assert observed == PodObservation(
        name="mnist-ps-0",
        replica_type=ReplicaType.PS,
        index=0,
        phase="Pending",
        uid=POD_UID,
        owner_uid=JOB_UID,
        spec_hash="5f1c0aa3b2d4e6f7",
    )


def test_from_pod_running_but_not_ready() -> None:
    conditions_ = [
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
        {"type": "PodScheduled", "status": "True"},
    ]
    raw = api_pod("mnist-chief-0", "chief", "0", {"phase": "Running", "conditions": conditions_})
    observed = PodObservation.from_pod(raw)
    assert observed.replica_type is ReplicaType.CHIEF
    assert observed.ready is False


@pytest.mark.parametrize(
    ("label", "replica_type"),
    [
        ("chief", ReplicaType.CHIEF),
        ("master", ReplicaType.MASTER),
        ("worker", ReplicaType.WORKER),
        ("ps", ReplicaType.PS),
        ("evaluator", ReplicaType.EVALUATOR),
        ("launcher", ReplicaType.LAUNCHER),
        ("sidecar", None),
    ],
)
def test_from_pod_reads_the_replica_type_label(
    label: str, replica_type: ReplicaType | None
) -> None:
    observed = PodObservation.from_pod(api_pod("p", label, "0", {"phase": "Pending"}))
    assert observed.replica_type is replica_type


def test_from_pod_without_operator_labels() -> None:
    raw = {"metadata": {"name": "stray"}, "status": {"phase": "Running"}}
    observed = PodObservation.from_pod(raw)
    assert observed.replica_type is None
    assert observed.index is None


def test_from_pod_that_is_being_deleted() -> None:
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {"phase": "Running", "conditions": READY_CONDITIONS},
        deletionTimestamp="2025-03-01T12:30:00Z",
        deletionGracePeriodSeconds=30,
    )
    observed = PodObservation.from_pod(raw)
    assert observed.deleting is True
    assert observed.ready is True


def test_from_pod_takes_the_exit_code_of_the_tensorflow_container() -> None:
    # The kubelet lists container statuses by name: the sidecar comes first here.
    raw = api_pod(
        "mnist-worker-1",
        "worker",
        "1",
        {
            "phase": "Failed",
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodFailed"}],
            "containerStatuses": [
                {
                    "name": "fluent-bit",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 143,
                            "reason": "Error",
                            "startedAt": "2025-03-01T12:00:05Z",
                            "finishedAt": "2025-03-01T12:10:01Z",
                        }
                    },
                },
                {
                    "name": "tensorflow",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "message": "ValueError: bad input shape",
                            "startedAt": "2025-03-01T12:00:05Z",
                            "finishedAt": "2025-03-01T12:10:00Z",
                        }
                    },
                },
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert observed.phase == "Failed"
    assert (observed.exit_code, observed.reason, observed.message) == (
        1,
        "Error",
        "ValueError: bad input shape",
    )


def test_from_pod_trainer_exit_zero_wins_over_a_failed_sidecar() -> None:
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "a-sidecar", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}},
                {
                    "name": "tensorflow",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                },
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert (observed.exit_code, observed.reason) == (0, "Completed")


def test_from_pod_falls_back_to_the_failed_sidecar_while_the_trainer_runs() -> None:
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Running",
            "containerStatuses": [
                {"name": "proxy", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}},
                {"name": "tensorflow", "state": {"running": {"startedAt": "2025-03-01T12:00:05Z"}}},
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert (observed.exit_code, observed.reason) == (2, "Error")


def test_from_pod_oom_killed_trainer() -> None:
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "lastState": {},
                    "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                }
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert (observed.exit_code, observed.reason, observed.message) == (137, "OOMKilled", None)


def test_from_pod_succeeded() -> None:
    raw = api_pod(
        "mnist-chief-0",
        "chief",
        "0",
        {
            "phase": "Succeeded",
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert (observed.phase, observed.ready, observed.exit_code) == ("Succeeded", False, 0)


EVICTION_MESSAGE = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. "
    "Container tensorflow was using 30Gi, request is 16Gi, has larger consumption of memory. "
)


def test_from_pod_evicted_reason_comes_from_the_pod_status() -> None:
    raw = api_pod(
        "mnist-ps-0",
        "ps",
        "0",
        {
            "phase": "Failed",
            "reason": "Evicted",
            "message": EVICTION_MESSAGE,
            "startTime": "2025-03-01T12:00:00Z",
        },
    )
    observed = PodObservation.from_pod(raw)
    assert (observed.phase, observed.exit_code, observed.reason, observed.message) == (
        "Failed",
        None,
        "Evicted",
        EVICTION_MESSAGE,
    )


def test_from_pod_terminated_trainer_without_reason_takes_the_pods() -> None:
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Failed",
            "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline",
            "containerStatuses": [
                {"name": "tensorflow", "state": {"terminated": {"exitCode": 137}}}
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert (observed.exit_code, observed.reason, observed.message) == (
        137,
        "DeadlineExceeded",
        "Pod was active on the node longer than the specified deadline",
    )


def test_from_pod_evicted_with_killed_trainer_still_reports_the_eviction() -> None:
    # What current kubelets write for an evicted pod: the pod's reason, and the killed container.
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Failed",
            "reason": "Evicted",
            "message": EVICTION_MESSAGE,
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "ContainerStatusUnknown",
                            "message": "The container could not be located when the pod was "
                            "terminated",
                        }
                    },
                }
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert observed.reason == "Evicted"
    assert observed.message == EVICTION_MESSAGE


def test_from_pod_to_failure_message_end_to_end() -> None:
    raw = api_pod(
        "mnist-worker-1",
        "worker",
        "1",
        {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "message": "memory limit 8Gi reached\n",
                        }
                    },
                }
            ],
        },
    )
    pods = [pod("Chief", 0, "Running"), PodObservation.from_pod(raw)]
    status, _ = run(specs(Chief=1, Worker=2), pods)
    (failed,) = [c for c in status.conditions or [] if c.type.value == "Failed"]
    assert failed.message == (
        "TFJob ml/mnist has failed: Worker 1 (pod mnist-worker-1) exited with code 137 "
        "(OOMKilled): memory limit 8Gi reached"
    )


# ----- a failure before success ------------------------------------------------------------
def at(second: int) -> str:
    return f"2025-03-01T12:00:{second:02d}Z"


@pytest.mark.parametrize(
    ("worker1_failed_at", "outcome"),
    [
        (at(3), ("Failed", "TFJobFailed")),  # failed first: the job failed
        (at(9), ("Succeeded", "TFJobSucceeded")),  # failed on its way out after success
        (at(5), ("Succeeded", "TFJobSucceeded")),  # the same second: success wins the tie
        (None, ("Succeeded", "TFJobSucceeded")),  # no finish time: success wins, as before
    ],
)
def test_a_pod_that_failed_before_the_deciding_pod_succeeded_fails_the_job(
    worker1_failed_at: str | None, outcome: tuple[str, str]
) -> None:
    """One pass sees both ends at once (e.g. after the operator was down): their container
    finish times, not the order a pass saw them in, decide."""
    pods = [
        pod("Worker", 0, "Succeeded", exit_code=0, finished_at=at(5)),
        pod("Worker", 1, "Failed", exit_code=1, finished_at=worker1_failed_at),
    ]
    status, _ = run(specs(Worker=2), pods)
    kind = outcome[0]
    assert conditions(status)[kind] == ("True", outcome[1])
    other = "Succeeded" if kind == "Failed" else "Failed"
    assert other not in conditions(status)


def test_all_workers_success_is_failed_by_a_worker_that_failed_before_the_last_success() -> None:
    pods = [
        pod("Worker", 0, "Succeeded", exit_code=0, finished_at=at(5)),
        pod("Worker", 1, "Failed", exit_code=2, finished_at=at(4)),
        pod("Worker", 1, "Succeeded", exit_code=0, finished_at=at(8)),
    ]
    status, _ = run(specs(Worker=2), pods, policy=SuccessPolicy.ALL_WORKERS)
    assert conditions(status)["Failed"] == ("True", "TFJobFailed")


def test_from_pod_reads_when_the_trainer_container_ended() -> None:
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "state": {"terminated": {"exitCode": 1, "finishedAt": at(7)}},
                }
            ],
        },
    )
    assert PodObservation.from_pod(raw).finished_at == at(7)


# ----- why pods cannot start ------------------------------------------------------------------
UNSCHEDULABLE = "0/7 nodes are available: 3 Insufficient nvidia.com/gpu, 4 node(s) had taints."


def test_from_pod_reads_why_it_cannot_start() -> None:
    unschedulable = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": UNSCHEDULABLE,
                }
            ],
        },
    )
    observed = PodObservation.from_pod(unschedulable)
    assert (observed.waiting_reason, observed.waiting_message) == ("Unschedulable", UNSCHEDULABLE)
    pulling = api_pod(
        "mnist-worker-1",
        "worker",
        "1",
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "state": {
                        "waiting": {"reason": "ErrImagePull", "message": "tf:2.99 not found"}
                    },
                }
            ],
        },
    )
    observed = PodObservation.from_pod(pulling)
    assert observed.waiting_reason == "ErrImagePull"
    assert observed.waiting_message == "container tensorflow: tf:2.99 not found"
    creating = api_pod(
        "mnist-worker-2",
        "worker",
        "2",
        {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "tensorflow", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ],
        },
    )
    assert PodObservation.from_pod(creating).waiting_reason is None


def test_status_says_why_pods_wait_until_the_job_ends() -> None:
    waiting = pod(
        "Worker", 1, "Pending", waiting_reason="Unschedulable", waiting_message=UNSCHEDULABLE
    )
    status, _ = run(specs(Worker=2), [pod("Worker", 0, "Running"), waiting])
    assert status.waiting is not None
    assert [(w.pod, w.reason, w.message) for w in status.waiting] == [
        ("mnist-worker-1", "Unschedulable", UNSCHEDULABLE)
    ]
    status, _ = run(specs(Worker=2), [pod("Worker", 0, "Succeeded"), waiting])
    assert status.waiting is None


def test_the_deciding_pods_reported_metrics_reach_the_status() -> None:
    from tfjob_operator.core.status import reported_metrics

    def reporting(message: str | None) -> PodObservation:
        return PodObservation("p", ReplicaType.WORKER, 0, "Succeeded", message=message)

    assert reported_metrics([reporting('{"tfjob.dev/metrics": {"loss": 0.5, "acc": 1}}')]) == {
        "acc": 1.0,
        "loss": 0.5,
    }
    # Not a metrics document, or nothing usable in it: the next pod is asked.
    for message in (None, "OOMKilled", '{"other": 1}', '{"tfjob.dev/metrics": {"x": "y"}}'):
        assert reported_metrics([reporting(message)]) is None
    assert reported_metrics(
        [reporting("killed"), reporting('{"tfjob.dev/metrics": {"loss": 2}}')]
    ) == {"loss": 2.0}


def test_from_pod_whose_package_install_failed_names_the_init_container_and_its_words() -> None:
    """What a kubelet reports when an init container fails under restartPolicy Never: the pod
    Failed, the trainer never started, the init container's exit and termination message."""
    raw = api_pod(
        "mnist-worker-0",
        "worker",
        "0",
        {
            "phase": "Failed",
            "initContainerStatuses": [
                {
                    "name": "tfjob-source",
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                },
                {
                    "name": "tfjob-packages",
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "message": "pip install failed:\nERROR: No matching distribution\n",
                            "finishedAt": "2025-03-01T12:00:09Z",
                        }
                    },
                },
            ],
            "containerStatuses": [
                {"name": "tensorflow", "state": {"waiting": {"reason": "PodInitializing"}}}
            ],
        },
    )
    observed = PodObservation.from_pod(raw)
    assert (observed.phase, observed.exit_code, observed.reason) == ("Failed", 1, "Error")
    assert observed.message == (
        "init container tfjob-packages: pip install failed:\nERROR: No matching distribution"
    )
    assert observed.finished_at == "2025-03-01T12:00:09Z"


def test_a_pod_failed_from_outside_says_why_through_its_disruption_condition() -> None:
    """The pod garbage collector fails a lost node's pods without a container exit: the
    DisruptionTarget condition is the only place that says why."""
    pod = {
        "metadata": {"name": "mnist-worker-0", "uid": "u", "labels": {}},
        "status": {
            "phase": "Failed",
            "conditions": [
                {"type": "Ready", "status": "False"},
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists",
                },
            ],
            "containerStatuses": [{"name": "tensorflow", "state": {"running": {}}}],
        },
    }
    observed = PodObservation.from_pod(pod)
    assert (observed.phase, observed.exit_code) == ("Failed", None)
    assert observed.reason == "DeletionByPodGC"
    assert observed.message == "PodGC: node no longer exists"


def test_completed_indexes_are_written_as_ranges_and_read_back_within_the_replicas() -> None:
    assert index_ranges({0, 2, 3, 4, 7}) == "0,2-4,7"
    assert index_ranges({5}) == "5"
    assert index_ranges(set()) == ""
    assert parse_index_ranges("0,2-4,7", below=10) == {0, 2, 3, 4, 7}
    assert parse_index_ranges("0,2-4,7", below=4) == {0, 2, 3}  # scaled down since
    assert parse_index_ranges("x,3-1,,-2,1", below=4) == {1}
    assert parse_index_ranges(None, below=4) == set()


def test_a_success_whose_pod_is_gone_stands_in_the_current_attempt_only() -> None:
    """Worker 3 succeeded and the pod garbage collector removed it: the status keeps it."""
    previous = TensorFlowJobStatus.model_validate(
        {
            "attempt": 2,
            "replicaStatuses": {
                "Worker": {"active": 3, "succeeded": 1, "failed": 0, "completedIndexes": "3"}
            },
        }
    )
    here = [pod("Worker", i, "Running", attempt=2) for i in range(3)]
    (gone,) = recorded_successes("job", "job-uid", specs(Worker=4), previous, here)
    assert (gone.name, gone.phase, gone.index, gone.attempt) == ("job-worker-3", "Succeeded", 3, 2)
    assert gone.uid.startswith(RECORDED)
    status, _ = run(specs(Worker=4), [*here, gone], previous=previous)
    counts = dumped(status)["replicaStatuses"]["Worker"]
    assert (counts["succeeded"], counts["completedIndexes"]) == (1, "3")
    # A pod of that index here again (of this attempt) is what counts.
    again = pod("Worker", 3, "Running", attempt=2)
    assert recorded_successes("job", "job-uid", specs(Worker=4), previous, [*here, again]) == []
