"""Time alone: runPolicy.activeDeadlineSeconds, schedulingPolicy.scheduleTimeoutSeconds and
ttlSecondsAfterFinished. Each rule returns what it decides now and, when time alone will change
that, the seconds until it does: the pass turns those into its look_again_after. Pure."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tfjob_operator.api.v1alpha1 import (
    ConditionType,
    ReplicaSpecs,
    RunPolicy,
    SchedulingPolicy,
    TensorFlowJobStatus,
)

from .observed import PodObservation, Problem

DEADLINE_EXCEEDED = "DeadlineExceeded"
SCHEDULE_TIMEOUT = "ScheduleTimeoutExceeded"


def past_deadline(
    job: dict[str, Any],
    previous: TensorFlowJobStatus | None,
    run_policy: RunPolicy,
    now: dt.datetime,
) -> tuple[Problem | None, float | None]:
    """runPolicy.activeDeadlineSeconds, counted from status.startTime (so an operator restart
    loses nothing): the problem that fails the job once it has run out, else the seconds until
    it will."""
    limit = run_policy.active_deadline_seconds
    if limit is None:
        return None, None
    started = (previous.start_time if previous else None) or now
    due = after(started, limit)
    if due is None:
        return None, None  # past the end of the calendar: never
    if now < due:
        return None, (due - now).total_seconds()
    metadata = job["metadata"]
    return (
        Problem(
            DEADLINE_EXCEEDED,
            f"TFJob {metadata['namespace']}/{metadata['name']} has failed: it was active longer "
            f"than runPolicy.activeDeadlineSeconds ({limit} s); its pods were stopped.",
        ),
        None,
    )


def past_schedule_timeout(
    job: dict[str, Any],
    previous: TensorFlowJobStatus | None,
    run_policy: RunPolicy,
    replica_specs: ReplicaSpecs,
    pods: list[PodObservation],
    now: dt.datetime,
) -> tuple[Problem | None, float | None]:
    """runPolicy.schedulingPolicy.scheduleTimeoutSeconds: the pods must all run within it,
    counted from status.startTime, or from the start of a restart in progress: the problem once
    it has run out, else the seconds until it will."""
    limit = (run_policy.scheduling_policy or SchedulingPolicy()).schedule_timeout_seconds
    if limit is None or previous is None or previous.start_time is None:
        return None, None
    wanted = sum(spec.replicas for _, spec in replica_specs.items())
    if sum(1 for p in pods if not p.deleting and p.phase in ("Running", "Succeeded")) >= wanted:
        return None, None
    waiting = [p for p in pods if p.phase == "Pending" and not p.deleting]
    since = previous.start_time
    restarting = next(
        (
            c
            for c in previous.conditions or []
            if c.type is ConditionType.RESTARTING and c.status == "True"
        ),
        None,
    )
    if restarting is not None and restarting.last_transition_time is not None:
        since = max(since, restarting.last_transition_time)
    due = after(since, limit)
    if due is None:
        return None, None  # past the end of the calendar: never
    if now < due:
        return None, (due - now).total_seconds()
    why = next((p for p in waiting if p.waiting_reason), None)
    said = (
        f" {why.name}: {why.waiting_reason}: {why.waiting_message}"
        if why is not None
        else f" {len(waiting)} pod(s) still Pending."
    )
    metadata = job["metadata"]
    return (
        Problem(
            SCHEDULE_TIMEOUT,
            f"TFJob {metadata['namespace']}/{metadata['name']} has failed: its pods were not all "
            f"running within runPolicy.schedulingPolicy.scheduleTimeoutSeconds ({limit} s);{said}",
        ),
        None,
    )


def after(start: dt.datetime, seconds: int) -> dt.datetime | None:
    """``seconds`` after ``start``, or None when that is past year 9999 (the schema allows
    any int64, as Kubernetes' own activeDeadlineSeconds does)."""
    try:
        return start + dt.timedelta(seconds=seconds)
    except OverflowError:
        return None


def expired(
    status: TensorFlowJobStatus, run_policy: RunPolicy, now: dt.datetime
) -> tuple[bool, float | None]:
    """runPolicy.ttlSecondsAfterFinished, counted from status.completionTime: whether the
    finished job is to be deleted now, else the seconds until it will be."""
    ttl = run_policy.ttl_seconds_after_finished
    if ttl is None:
        return False, None
    due = after(status.completion_time or now, ttl)
    if due is None:
        return False, None  # past the end of the calendar: never
    if now >= due:
        return True, None
    return False, (due - now).total_seconds()
