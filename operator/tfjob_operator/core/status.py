"""A job's status, computed from the pods it has. Pure: same inputs, same status.

Conditions use Kubeflow's vocabulary (Created, Running, Restarting, Succeeded, Failed,
Suspended) and reasons (TFJobCreated...). A condition changes only when its status, reason or
message does, so an unchanged world produces an identical status and no write.
"""

from __future__ import annotations

import datetime as dt
import json
import math

from tfjob_operator.api.v1alpha1 import (
    Condition,
    ConditionType,
    PendingPod,
    ReplicaSpecs,
    ReplicaStatus,
    ReplicaType,
    Settling,
    SuccessPolicy,
    TensorFlowJobStatus,
)

from .events import JobEvent
from .observed import (
    PodObservation,
    Problem,
    describe_failure,
    moment,
)
from .topology import chief_type, pod_name

# The uid prefix of a pod that succeeded and is gone, as the status recorded it.
RECORDED = "recorded/"

TERMINAL = (ConditionType.SUCCEEDED, ConditionType.FAILED)
MAX_WAITING_PODS = 5
MAX_METRICS = 32  # a status stays small whatever a training reports
RESTARTING = "TFJobRestarting"
SUSPENDED = "TFJobSuspended"
RESUMED = "TFJobResumed"


# What kube-scheduler says of a gang's pod it did not try to place, the group being short.
GANG_WAIT = "waiting for minCount pods from a gang"


def _set(
    conditions: dict[ConditionType, Condition],
    kind: ConditionType,
    status: str,
    reason: str,
    message: str,
    now: dt.datetime,
) -> None:
    current = conditions.get(kind)
    if current and (current.status, current.reason, current.message) == (status, reason, message):
        return
    transition = current.last_transition_time if current and current.status == status else now
    conditions[kind] = Condition(
        type=kind,
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        last_update_time=now,
        last_transition_time=transition,
    )


def is_true(status: TensorFlowJobStatus | None, kind: ConditionType) -> bool:
    return any(c.type is kind and c.status == "True" for c in (status and status.conditions) or [])


def is_finished(status: TensorFlowJobStatus | None) -> bool:
    return any(is_true(status, kind) for kind in TERMINAL)


def state_of(conditions: dict[ConditionType, Condition]) -> str | None:
    for kind in (
        *TERMINAL,
        ConditionType.SUSPENDED,
        ConditionType.RESTARTING,
        ConditionType.RUNNING,
        ConditionType.CREATED,
    ):
        condition = conditions.get(kind)
        if condition and condition.status == "True":
            return kind.value
    return None


def compute_status(
    *,
    job_name: str,
    namespace: str,
    replica_specs: ReplicaSpecs | None,
    pods: list[PodObservation],
    previous: TensorFlowJobStatus | None,
    generation: int | None,
    success_policy: SuccessPolicy,
    now: dt.datetime,
    problem: Problem | None = None,
    restarting: str | None = None,
    restarts: dict[ReplicaType, tuple[int, int]] | None = None,
    disruptions: dict[ReplicaType, int] | None = None,
    replacing: list[str] | None = None,
    attempt: int | None = None,
    suspended: bool = False,
    settling: Settling | None = None,
) -> tuple[TensorFlowJobStatus, list[JobEvent]]:
    """The whole status after this pass, and the events its changes deserve.

    ``restarting``: a restart this pass begins (the Restarting condition's message; the events
    of each restart come from ``retries``). ``restarts``: per replica type, the restarts so far
    and the container restarts of its current pods; ``disruptions``: per type, the restarts
    disruptions caused; ``replacing``: the uids of counted pods still going (None: unchanged).
    ``attempt``: the run of the whole job. ``suspended``: runPolicy.suspend holds the job (its
    pods are going). ``settling``: a failure waits for its peers (see ``retries``): no outcome
    yet."""
    previous = previous or TensorFlowJobStatus()
    conditions = {c.type: c for c in previous.conditions or []}
    before = {kind: c.status for kind, c in conditions.items()}
    job = f"TFJob {namespace}/{job_name}"
    finished = is_finished(previous)

    _set(conditions, ConditionType.CREATED, "True", "TFJobCreated", f"{job} is created.", now)

    replica_statuses = dict(previous.replica_statuses or {})
    ready_text = previous.ready
    completion_time = previous.completion_time
    live = [p for p in pods if p.replica_type is not None]
    # Only the current attempt's pods decide the outcome: an earlier attempt's are going, and
    # one that ends (even with exit 0, its training cut short or not) after its attempt was
    # given up decides nothing.
    now_attempt = (attempt if attempt is not None else previous.attempt) or 1
    current = [p for p in live if p.attempt >= now_attempt]

    if replica_specs is not None:
        desired = sum(spec.replicas for _, spec in replica_specs.items())
        ready_text = f"{sum(1 for p in live if p.ready and not p.deleting)}/{desired}"
    if not finished and replica_specs is not None:
        # Counts stop at the moment the job finishes: cleanup deleting pods changes nothing.
        replica_statuses = {}
        for replica_type, _spec in replica_specs.items():
            mine = [p for p in live if p.replica_type is replica_type]
            was = (previous.replica_statuses or {}).get(replica_type.value)
            restarted, in_containers = (restarts or {}).get(
                replica_type,
                (was.restarts or 0, was.container_restarts or 0) if was else (0, 0),
            )
            disrupted = (disruptions or {}).get(replica_type, (was.disruptions or 0) if was else 0)
            completed = {
                p.index
                for p in mine
                if p.phase == "Succeeded" and p.attempt >= now_attempt and p.index is not None
            }
            replica_statuses[replica_type.value] = ReplicaStatus(
                active=sum(1 for p in mine if p.phase in ("Pending", "Running") and not p.deleting),
                succeeded=sum(1 for p in mine if p.phase == "Succeeded"),
                failed=sum(1 for p in mine if p.phase == "Failed"),
                restarts=restarted or None,
                container_restarts=in_containers or None,
                disruptions=disrupted or None,
                completed_indexes=index_ranges(completed) or None,
            )

    start_time = previous.start_time or now
    resumed = False
    metrics = previous.metrics
    if not finished and suspended:
        message = f"{job} is suspended: runPolicy.suspend is true."
        _set(conditions, ConditionType.SUSPENDED, "True", SUSPENDED, message, now)
        for other in (ConditionType.RUNNING, ConditionType.RESTARTING):
            if other in conditions:
                _set(conditions, other, "False", SUSPENDED, message, now)
        start_time = None  # the time a job runs starts again when it resumes
    elif not finished and is_true(previous, ConditionType.SUSPENDED):
        _set(
            conditions,
            ConditionType.SUSPENDED,
            "False",
            RESUMED,
            f"{job} is resumed: its pods are created again.",
            now,
        )
        start_time, resumed = now, True
    if not finished and not suspended:
        outcome = problem and (ConditionType.FAILED, problem.reason, problem.message)
        if outcome is None and replica_specs is not None and settling is None:
            outcome = _outcome(job, replica_specs, current, success_policy)
        was_restarting = is_true(previous, ConditionType.RESTARTING)
        if outcome is not None:
            kind, reason, message = outcome
            if kind is ConditionType.SUCCEEDED and replica_specs is not None:
                deciding = deciding_successes(replica_specs, current, success_policy) or []
                metrics = reported_metrics(sorted(deciding, key=lambda p: p.index or 0))
            _set(conditions, kind, "True", reason, message, now)
            for other in (ConditionType.RUNNING, ConditionType.RESTARTING):
                if other in conditions:
                    _set(conditions, other, "False", reason, message, now)
            completion_time = now
        elif restarting is not None or (
            was_restarting
            and replica_specs is not None
            and not _all_running(replica_specs, current)
        ):
            if restarting is not None:
                _set(conditions, ConditionType.RESTARTING, "True", RESTARTING, restarting, now)
            if ConditionType.RUNNING in conditions:
                message = conditions[ConditionType.RESTARTING].message
                _set(conditions, ConditionType.RUNNING, "False", RESTARTING, message, now)
        elif replica_specs is not None and _running(replica_specs, current):
            if was_restarting:
                _set(
                    conditions,
                    ConditionType.RESTARTING,
                    "False",
                    "TFJobRunning",
                    f"{job} restarted and runs again.",
                    now,
                )
            _set(
                conditions, ConditionType.RUNNING, "True", "TFJobRunning", f"{job} is running.", now
            )

    waiting = None
    if not any(conditions[k].status == "True" for k in TERMINAL if k in conditions):
        pending = [
            PendingPod(pod=p.name, reason=p.waiting_reason, message=p.waiting_message or "")
            for p in live
            if p.phase == "Pending" and p.waiting_reason and not p.deleting
        ]
        # The members of a gang the scheduler did not try say only that the group waits; the
        # ones it tried say why (Insufficient nvidia.com/gpu...): those come first.
        pending.sort(key=lambda entry: GANG_WAIT in entry.message)
        waiting = pending[:MAX_WAITING_PODS] or None
    ordered = [conditions[k] for k in ConditionType if k in conditions]
    status = TensorFlowJobStatus(
        state=state_of(conditions),
        ready=ready_text,
        conditions=ordered,
        replica_statuses=replica_statuses or None,
        start_time=start_time,
        completion_time=completion_time,
        observed_generation=generation,
        attempt=attempt if attempt is not None else previous.attempt,
        settling=None if finished else settling,
        replacing=(previous.replacing if replacing is None else replacing) or None,
        metrics=metrics,
        waiting=waiting,
    )
    events = [
        JobEvent(
            "Warning" if kind is ConditionType.FAILED else "Normal",
            condition.reason,
            condition.message,
        )
        for kind, condition in conditions.items()
        # Each restart has its own event (``retries``): the condition adds none.
        if condition.status == "True"
        and before.get(kind) != "True"
        and kind is not ConditionType.RESTARTING
    ]
    if resumed:
        events.append(JobEvent("Normal", RESUMED, conditions[ConditionType.SUSPENDED].message))
    return status, events


def _outcome(
    job: str,
    replica_specs: ReplicaSpecs,
    pods: list[PodObservation],
    success_policy: SuccessPolicy,
) -> tuple[ConditionType, str, str] | None:
    """Succeeded or Failed, if the pods say so. The job succeeds when the pods that decide
    success have, unless a pod failed before them: workers failing on their way out after the
    chief succeeded do not fail the job, a worker that failed first does, whatever order a pass
    sees them in (their containers' finish times, to the second, tell; a tie goes to success)."""
    deciding = deciding_successes(replica_specs, pods, success_policy)
    # Failures are told in replica-type order, the launcher last: a worker evicted under a
    # running mpirun is the cause, the launcher's crash only its consequence.
    # A failed pod that is going was replaced (or restarted with the whole job): it decides
    # nothing any more.
    failed = sorted(
        (p for p in pods if p.phase == "Failed" and not p.deleting),
        key=lambda p: (list(ReplicaType).index(p.replica_type), p.index or 0),  # type: ignore[arg-type]
    )
    if deciding is not None:
        succeeded_at = _latest(deciding)
        failed = [p for p in failed if _ended_before(p, succeeded_at)]
        if not failed:
            return ConditionType.SUCCEEDED, "TFJobSucceeded", f"{job} successfully completed."
    if failed:
        first = failed[0]
        others = f" ({len(failed) - 1} more pod(s) failed)" if len(failed) > 1 else ""
        return (
            ConditionType.FAILED,
            "TFJobFailed",
            f"{job} has failed: {describe_failure(first)}{others}",
        )
    return None


def deciding_successes(
    replica_specs: ReplicaSpecs, pods: list[PodObservation], success_policy: SuccessPolicy
) -> list[PodObservation] | None:
    """The succeeded pods that make the job succeed, or None while they have not."""
    chief = chief_type(replica_specs)
    by_key = {(p.replica_type, p.index): p for p in pods}
    if chief in (ReplicaType.LAUNCHER, ReplicaType.CHIEF, ReplicaType.MASTER):
        pod = by_key.get((chief, 0))
        return [pod] if pod and pod.phase == "Succeeded" else None
    if chief is not ReplicaType.WORKER:
        return None
    if success_policy is SuccessPolicy.ALL_WORKERS:
        workers = dict(replica_specs.items())[ReplicaType.WORKER].replicas
        done = {
            p.index: p
            for p in pods
            if p.replica_type is ReplicaType.WORKER and p.phase == "Succeeded"
        }
        return list(done.values()) if workers and len(done) >= workers else None
    worker0 = by_key.get((ReplicaType.WORKER, 0))
    return [worker0] if worker0 and worker0.phase == "Succeeded" else None


def _latest(pods: list[PodObservation]) -> dt.datetime | None:
    times = [moment(p.finished_at) for p in pods]
    return max(times) if times and all(t is not None for t in times) else None  # type: ignore[type-var]


def _ended_before(pod: PodObservation, cutoff: dt.datetime | None) -> bool:
    ended = moment(pod.finished_at)
    return ended is not None and cutoff is not None and ended < cutoff


METRICS_KEY = "tfjob.dev/metrics"


def reported_metrics(pods: list[PodObservation]) -> dict[str, float] | None:
    """The metrics the first of ``pods`` that reported any wrote to its termination message
    (`{"tfjob.dev/metrics": {"loss": 0.12}}`); a message that says something else is ignored."""
    for pod in pods:
        try:
            document = json.loads(pod.message or "")
        except ValueError:
            continue
        values = document.get(METRICS_KEY) if isinstance(document, dict) else None
        if not isinstance(values, dict):
            continue
        found = {
            str(name): float(value)
            for name, value in values.items()
            if isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        }
        if found:
            return dict(sorted(found.items())[:MAX_METRICS])
    return None


def _all_running(replica_specs: ReplicaSpecs, pods: list[PodObservation]) -> bool:
    """Every pod the job wants is here and Running (or done): a restart is over."""
    up = {
        (p.replica_type, p.index)
        for p in pods
        if not p.deleting and p.phase in ("Running", "Succeeded")
    }
    return all(
        (replica_type, index) in up
        for replica_type, spec in replica_specs.items()
        for index in range(spec.replicas)
    )


def index_ranges(indexes: set[int]) -> str:
    """``{0, 2, 3, 4}`` as ``"0,2-4"`` (a Kubernetes Job's completedIndexes)."""
    ranges: list[str] = []
    ordered = sorted(indexes)
    start = 0
    for at, index in enumerate(ordered):
        if at + 1 == len(ordered) or ordered[at + 1] != index + 1:
            first = ordered[start]
            ranges.append(str(first) if first == index else f"{first}-{index}")
            start = at + 1
    return ",".join(ranges)


def parse_index_ranges(text: str | None, below: int) -> set[int]:
    """The indexes under ``below`` that ``index_ranges`` wrote (anything else is dropped)."""
    found: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or not (last or first).isdigit():
            continue
        found.update(range(int(first), min(int(last or first), below - 1) + 1))
    return found


def recorded_successes(
    job_name: str,
    owner_uid: str,
    replica_specs: ReplicaSpecs,
    previous: TensorFlowJobStatus | None,
    pods: list[PodObservation],
) -> list[PodObservation]:
    """The pods the status records as succeeded in the current attempt that are gone (the pod
    garbage collector removes ended pods past its threshold; a person may): their successes
    stand, as observations of pods that succeeded. The uid of each says it was recorded."""
    counts = (previous.replica_statuses if previous else None) or {}
    if previous is None or not counts:
        return []
    attempt = previous.attempt or 1
    present = {(p.replica_type, p.index) for p in pods if p.attempt >= attempt}
    recorded = []
    for replica_type, spec in replica_specs.items():
        was = counts.get(replica_type.value)
        completed = parse_index_ranges(was.completed_indexes if was else None, spec.replicas)
        for index in sorted(completed):
            if (replica_type, index) not in present:
                name = pod_name(job_name, replica_type, index)
                recorded.append(
                    PodObservation(
                        name=name,
                        replica_type=replica_type,
                        index=index,
                        phase="Succeeded",
                        uid=f"{RECORDED}{name}",
                        owner_uid=owner_uid,
                        attempt=attempt,
                    )
                )
    return recorded


def _running(replica_specs: ReplicaSpecs, pods: list[PodObservation]) -> bool:
    chief = chief_type(replica_specs)
    return any(p.replica_type is chief and p.phase == "Running" for p in pods)
