"""What a failure costs: restart policies, restart scope and backoffLimit, decided purely.

Kubeflow's meaning of a replica's restartPolicy, with every restart counted:
- Never: a failed pod fails the job (``status`` says so; nothing here).
- OnFailure / Always: the kubelet restarts containers in place; their restartCount grows, and
  its growth is counted. A pod that fails as a whole (evicted, node lost) is replaced.
- ExitCode: exit codes 1-127 are permanent (the job fails); 128-255, and a pod that failed
  without an exit code, are retried.
A retried failure replaces the pod under its own name (restartScope Pod), or stops every pod so
the job runs again as a new attempt (restartScope Job: a collective cannot take a worker back).
Each restart counts toward backoffLimit; past it the job fails with BackoffLimitExceeded. The
counts live on the status, so nothing is forgotten across operator restarts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tfjob_operator.api.v1alpha1 import (
    DEFAULT_BACKOFF_LIMIT,
    ReplicaSpecs,
    ReplicaType,
    RestartPolicy,
    RestartScope,
    RunPolicy,
    SuccessPolicy,
    TensorFlowJobStatus,
)

from .events import JobEvent
from .observed import PodObservation, Problem, describe_failure
from .status import deciding_successes

BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
CONTAINER_RESTARTED = "ContainerRestarted"
RESTARTING = "TFJobRestarting"
# How long a permanent failure in a collective waits for its peers' statuses before it fails
# the job: a worker killed on one node is often reported after the exit 1 its peer made when
# the collective broke (each kubelet reports on its own schedule, ~10 s apart at worst).
SETTLE_SECONDS = 15.0


@dataclass
class RetryPlan:
    """What this pass does about failures, and the counts the status records after it."""

    attempt: int = 1
    replace: list[PodObservation] = field(default_factory=list)  # delete; created again later
    new_attempt: bool = False  # every pod stops; the job runs again as ``attempt``
    restarts: dict[ReplicaType, tuple[int, int]] = field(default_factory=dict)
    restarting: str | None = None  # the Restarting condition's message when a restart begins
    problem: Problem | None = None  # BackoffLimitExceeded
    events: list[JobEvent] = field(default_factory=list)
    counted: dict[str, int] = field(default_factory=dict)  # restarts this pass, by scope
    # A permanent failure waits for the attempt's running peers: no verdict this pass, and a
    # look again after these seconds (the window ends).
    settling: float | None = None


def restart_scope(replica_specs: ReplicaSpecs, run_policy: RunPolicy) -> RestartScope:
    """The job's restartScope, or its default: Job for a collective (MPI, or more than one
    Chief/Worker pod and no PS), Pod otherwise."""
    if run_policy.restart_scope is not None:
        return run_policy.restart_scope
    specs = dict(replica_specs.items())
    if ReplicaType.LAUNCHER in specs:
        return RestartScope.JOB
    if ReplicaType.PS in specs:
        return RestartScope.POD
    training = sum(
        spec.replicas
        for replica_type, spec in specs.items()
        if replica_type in (ReplicaType.CHIEF, ReplicaType.MASTER, ReplicaType.WORKER)
    )
    return RestartScope.JOB if training > 1 else RestartScope.POD


def is_retryable(policy: RestartPolicy, pod: PodObservation) -> bool:
    """Whether a Failed pod under ``policy`` is to be restarted rather than fail the job."""
    if policy is RestartPolicy.NEVER:
        return False
    if policy is RestartPolicy.EXIT_CODE:
        code = pod.exit_code
        return code is None or not 1 <= code <= 127
    return True  # OnFailure / Always: the pod failed as a whole, not a container in it


def plan_retries(
    *,
    job: str,
    replica_specs: ReplicaSpecs,
    run_policy: RunPolicy,
    success_policy: SuccessPolicy,
    pods: list[PodObservation],
    previous: TensorFlowJobStatus | None,
    now: dt.datetime,
) -> RetryPlan:
    """Count the restarts the kubelet made since the last pass, and decide the failed pods'
    fate. ``job``: "TFJob ns/name", for messages. ``pods``: the job's own pods."""
    attempt = (previous.attempt if previous else None) or 1
    plan = RetryPlan(attempt=attempt)
    limit = run_policy.backoff_limit
    limit = DEFAULT_BACKOFF_LIMIT if limit is None else limit
    policies = dict((t, spec.restart_policy) for t, spec in replica_specs.items())
    before = (previous.replica_statuses if previous else None) or {}
    # An earlier attempt's pods are only waiting to go (decide deletes them): their failures
    # were counted when that attempt ended, and counting them again would restart again.
    current = [
        p for p in pods if p.replica_type in policies and not p.deleting and p.attempt >= attempt
    ]

    # The kubelet's restarts: the growth of restartCount in the pods that were here before.
    used = attempt - 1
    last_failure = ""
    for replica_type in policies:
        was = before.get(replica_type.value)
        restarted = (was.restarts or 0) if was else 0
        counted = (was.container_restarts or 0) if was else 0
        mine = [p for p in current if p.replica_type is replica_type]
        live = sum(p.restarts for p in mine)
        if live > counted:
            restarted += live - counted
            plan.counted["container"] = plan.counted.get("container", 0) + live - counted
            # The status keeps counts per type, not per pod: the event names the pods that
            # have restarts, the one restarted most first.
            restarted_pods = sorted((p for p in mine if p.restarts), key=lambda p: -p.restarts)
            last_failure = _container_restart(restarted_pods[0])
            named = "; ".join(_container_restart(p) for p in restarted_pods[:3])
            plan.events.append(
                JobEvent(
                    "Warning",
                    CONTAINER_RESTARTED,
                    f"{replica_type.value}: {live - counted} more container restart(s) by the "
                    f"kubelet ({named}); {used + restarted} restart(s) so far, backoffLimit "
                    f"{limit}.",
                )
            )
        plan.restarts[replica_type] = (restarted, live)
        used += restarted
    if used > limit:
        plan.problem = _exceeded(job, limit, used, last_failure)
        return plan

    failed = [p for p in current if p.phase == "Failed"]
    if not failed or deciding_successes(replica_specs, current, success_policy) is not None:
        return plan  # nothing failed, or the job succeeded: the status tells
    scope = restart_scope(replica_specs, run_policy)
    training = [p for p in failed if p.replica_type is not ReplicaType.EVALUATOR]
    whole = scope is RestartScope.JOB and bool(training)
    if whole:
        # In a collective the peers of a killed worker fail because of it: the failure that
        # came first decides (one without an exit time, evicted or lost, came first).
        # In the same second, a retried exit is the likelier cause, and the launcher's exit
        # is its workers' consequence.
        first = min(
            training,
            key=lambda p: (
                p.finished_at is not None,
                p.finished_at or "",
                not is_retryable(policies[p.replica_type], p),  # type: ignore[index]
                p.replica_type is ReplicaType.LAUNCHER,
            ),
        )
        if not is_retryable(policies[first.replica_type], first):  # type: ignore[index]
            # A permanent failure fails the job (the status tells), once no peer of the attempt
            # that still runs can turn out to have failed first.
            plan.settling = _settling(first, current, now)
            return plan
    elif any(not is_retryable(policies[p.replica_type], p) for p in failed):  # type: ignore[index]
        return plan
    else:
        first = failed[0]
    cost = 1 if whole else len(failed)
    if used + cost > limit:
        plan.problem = _exceeded(job, limit, used + cost, describe_failure(first))
        return plan
    plan.counted["job" if whole else "pod"] = cost
    if whole:
        plan.new_attempt = True
        plan.attempt = attempt + 1
        plan.replace = [p for p in pods if not p.deleting]
        plan.restarting = (
            f"{job} is restarting every pod as attempt {plan.attempt}: {describe_failure(first)}."
        )
        plan.events.append(
            JobEvent(
                "Warning",
                RESTARTING,
                f"{describe_failure(first)}; restarting every pod as attempt {plan.attempt} "
                f"(restart {used + 1} of backoffLimit {limit}).",
            )
        )
        for replica_type, (restarted, _) in plan.restarts.items():
            plan.restarts[replica_type] = (restarted, 0)  # every current pod goes
        return plan
    plan.replace = failed
    for number, pod in enumerate(failed, start=used + 1):
        assert pod.replica_type is not None
        restarted, live = plan.restarts[pod.replica_type]
        # The replaced pod's container restarts are counted already; they leave with it.
        plan.restarts[pod.replica_type] = (restarted + 1, live - pod.restarts)
        plan.events.append(
            JobEvent(
                "Warning",
                RESTARTING,
                f"{describe_failure(pod)}; replacing the pod (restart {number} of backoffLimit "
                f"{limit}).",
            )
        )
    others = f" and {len(failed) - 1} more pod(s)" if len(failed) > 1 else ""
    plan.restarting = f"{job} is replacing {describe_failure(first)}{others}."
    return plan


def _settling(
    first: PodObservation, current: list[PodObservation], now: dt.datetime
) -> float | None:
    """Seconds until a collective's permanent failure may decide, while a peer of the attempt
    is still running: its own failure, not yet reported, may be the cause (a killed worker's
    137 after its peer's exit 1). Counted from the failure's finish time on its pod, so an
    operator restart in between waits no longer."""
    if first.finished_at is None:
        return None
    running = [
        p
        for p in current
        if p.phase in ("Pending", "Running")
        and p.replica_type is not ReplicaType.EVALUATOR
        and p.uid != first.uid
    ]
    if not running:
        return None
    try:
        finished = dt.datetime.fromisoformat(first.finished_at)
    except ValueError:
        return None
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=dt.UTC)
    left = (finished + dt.timedelta(seconds=SETTLE_SECONDS) - now).total_seconds()
    return left if left > 0 else None


def _container_restart(pod: PodObservation) -> str:
    code = f" after exit code {pod.last_exit_code}" if pod.last_exit_code is not None else ""
    return f"{pod.describe()}: the kubelet restarted its container{code}, {pod.restarts} time(s)"


def _exceeded(job: str, limit: int, used: int, last: str) -> Problem:
    return Problem(
        BACKOFF_LIMIT_EXCEEDED,
        f"{job} has failed: it needed restart {used} but runPolicy.backoffLimit is {limit}. "
        f"The last failure: {(last or 'unknown').rstrip('.')}.",
    )
