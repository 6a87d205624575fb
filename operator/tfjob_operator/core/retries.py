"""What a failure or a disruption costs: restart policies, restart scope and the limits, decided
purely.

A pod of the current attempt can end in two ways:
- it **fails**: the script exited non-zero, was OOM-killed, its container was SIGKILLed. The
  replica's restartPolicy decides (Kubeflow's meaning, every restart counted toward
  backoffLimit): Never fails the job; OnFailure / Always let the kubelet restart containers in
  place (their restartCount's growth is counted) and replace a pod that failed as a whole;
  ExitCode makes 1-127 permanent and retries 128-255 and a pod without an exit code.
- it is **taken** by the cluster (a disruption): evicted (kubectl drain, the Eviction API, node
  pressure), preempted, deleted by someone other than the operator, lost with its node. Whatever
  the policy it is restarted, counted toward disruptionLimit and not backoffLimit, as a batch
  Job's podFailurePolicy on DisruptionTarget and JobSet's RestartJobSetAndIgnoreMaxRestarts do.

A restart replaces the pod under its own name (restartScope Pod), or stops every pod so the job
runs again as a new attempt (restartScope Job: a collective cannot take a worker back; and in a
parameter-server job, a PS or Chief, which hold the variables and the coordinator).

In a collective the first cause decides: a killed worker's peers exit 1 because of it, and each
kubelet reports on its own schedule. A permanent failure that comes first waits (``settling``,
kept on the status) until the attempt's other pods have ended or SETTLE_SECONDS have passed;
a disruption or retried failure that came first (by when it happened, not when it was seen)
makes it a restart.

Each restart is counted once: the counts live on the status, a whole restart moves the job to a
new attempt (older attempts' pods count nothing), and a replaced pod's uid stays in
``status.replacing`` until it is gone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from tfjob_operator.api.v1alpha1 import (
    DEFAULT_BACKOFF_LIMIT,
    DEFAULT_DISRUPTION_LIMIT,
    ReplicaSpecs,
    ReplicaType,
    RestartPolicy,
    RestartScope,
    RunPolicy,
    Settling,
    SuccessPolicy,
    TensorFlowJobStatus,
)

from .events import JobEvent
from .observed import PodObservation, Problem, describe_failure, moment
from .status import deciding_successes
from .topology import pod_name

BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
DISRUPTION_LIMIT_EXCEEDED = "DisruptionLimitExceeded"
CONTAINER_RESTARTED = "ContainerRestarted"
RESTARTING = "TFJobRestarting"
# How long a permanent failure in a collective waits for its peers' statuses before it fails
# the job: a worker killed on one node is often reported after the exit 1 its peer made when
# the collective broke (each kubelet reports on its own schedule, ~10 s apart at worst).
SETTLE_SECONDS = 15.0
# The disruption of a pod someone other than the operator deleted, and of one that went
# while nobody watched (a member missing from an attempt whose other members started).
DELETED = "Deleted"
MISSING = "Missing"

_TAKEN_BY = {
    "EvictionByEvictionAPI": "was evicted (the Eviction API: a drain, or a disruption budget's "
    "owner)",
    "PreemptionByScheduler": "was preempted by kube-scheduler for a higher-priority pod",
    "DeletionByTaintManager": "was deleted by the taint manager (its node is not ready)",
    "DeletionByPodGC": "was removed by the pod garbage collector (its node is gone)",
    "TerminationByKubelet": "was ended by the kubelet (node pressure or a node shutdown)",
    "Evicted": "was evicted by the kubelet (node pressure)",
    DELETED: "was deleted by someone other than the operator",
    MISSING: "is gone: deleted or lost while the operator was not watching",
}


@dataclass(frozen=True)
class Loss:
    """A pod of the current attempt that failed, or that the cluster took (``taken``: why)."""

    pod: PodObservation
    taken: str | None
    at: dt.datetime | None  # when it failed, or when the cluster began taking it

    def describe(self) -> str:
        if self.taken is None:
            return describe_failure(self.pod)
        how = _TAKEN_BY.get(self.taken, f"was taken by the cluster ({self.taken})")
        return f"{self.pod.describe()} {how}"


@dataclass
class RetryPlan:
    """What this pass does about failures, and the counts the status records after it."""

    attempt: int = 1
    replace: list[PodObservation] = field(default_factory=list)  # delete; created again later
    new_attempt: bool = False  # every pod stops; the job runs again as ``attempt``
    restarts: dict[ReplicaType, tuple[int, int]] = field(default_factory=dict)
    disruptions: dict[ReplicaType, int] = field(default_factory=dict)
    replacing: list[str] | None = None  # status.replacing after this pass
    restarting: str | None = None  # the Restarting condition's message when a restart begins
    problem: Problem | None = None  # BackoffLimitExceeded, DisruptionLimitExceeded
    events: list[JobEvent] = field(default_factory=list)
    counted: dict[str, int] = field(default_factory=dict)  # restarts this pass, by scope
    # A permanent failure waits for the attempt's running peers: no verdict this pass, and a
    # look again when the window ends.
    settling: Settling | None = None


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


def whole_job_types(replica_specs: ReplicaSpecs, scope: RestartScope) -> set[ReplicaType]:
    """The replica types whose loss restarts every pod: all but the Evaluator in Job scope; the
    parameter servers and the chief of a parameter-server job in either scope."""
    types = {t for t, _ in replica_specs.items()}
    if scope is RestartScope.JOB:
        return types - {ReplicaType.EVALUATOR}
    if ReplicaType.PS in types:
        return types & {ReplicaType.PS, ReplicaType.CHIEF, ReplicaType.MASTER}
    return set()


def is_retryable(policy: RestartPolicy, pod: PodObservation) -> bool:
    """Whether a Failed pod under ``policy`` is to be restarted rather than fail the job."""
    if policy is RestartPolicy.NEVER:
        return False
    if policy is RestartPolicy.EXIT_CODE:
        code = pod.exit_code
        return code is None or not 1 <= code <= 127
    return True  # OnFailure / Always: the pod failed as a whole, not a container in it


def loss_of(pod: PodObservation) -> Loss | None:
    """The pod's failure or disruption, if it has one. A pod being deleted was taken, unless it
    had failed on its own before its deletion began (then its failure decides)."""
    if pod.phase == "Succeeded":
        return None
    began = moment(pod.deletion_began)
    ended = moment(pod.finished_at)
    if pod.disruption is not None:
        return Loss(pod, pod.disruption, moment(pod.disrupted_at) or began or ended)
    if pod.deleting:
        if pod.phase == "Failed" and ended is not None and began is not None and ended < began:
            return Loss(pod, None, ended)
        return Loss(pod, DELETED, began)
    if pod.phase == "Failed":
        return Loss(pod, None, ended)
    return None


def plan_retries(
    *,
    job: str,
    job_name: str,
    replica_specs: ReplicaSpecs,
    run_policy: RunPolicy,
    success_policy: SuccessPolicy,
    pods: list[PodObservation],
    previous: TensorFlowJobStatus | None,
    now: dt.datetime,
    held: frozenset[str] = frozenset(),
) -> RetryPlan:
    """Count the restarts the kubelet made since the last pass, and decide the fate of the pods
    that failed or were taken. ``job``: "TFJob ns/name", for messages. ``pods``: the job's own
    pods, those going included. ``held``: names of the job's pods that another object holds."""
    attempt = (previous.attempt if previous else None) or 1
    plan = RetryPlan(attempt=attempt)
    backoff_limit = run_policy.backoff_limit
    backoff_limit = DEFAULT_BACKOFF_LIMIT if backoff_limit is None else backoff_limit
    disruption_limit = run_policy.disruption_limit
    disruption_limit = DEFAULT_DISRUPTION_LIMIT if disruption_limit is None else disruption_limit
    policies = dict((t, spec.restart_policy) for t, spec in replica_specs.items())
    wanted = {(t, i) for t, spec in replica_specs.items() for i in range(spec.replicas)}
    before = (previous.replica_statuses if previous else None) or {}
    replacing = set((previous.replacing if previous else None) or [])
    # An earlier attempt's pods are only waiting to go (decide deletes them): their failures
    # were counted when that attempt ended, and counting them again would restart again.
    current = [
        p
        for p in pods
        if p.replica_type in policies
        and p.attempt >= attempt
        and (p.replica_type, p.index) in wanted
    ]
    # A replaced pod leaves the list once it is gone: it can be counted no more.
    present = {p.uid for p in pods}
    plan.replacing = [uid for uid in sorted(replacing) if uid in present]

    # The kubelet's restarts: the growth of restartCount in the pods that were here before.
    used = 0
    disrupted = 0
    last_failure = ""
    for replica_type in policies:
        was = before.get(replica_type.value)
        restarted = (was.restarts or 0) if was else 0
        counted = (was.container_restarts or 0) if was else 0
        plan.disruptions[replica_type] = (was.disruptions or 0) if was else 0
        disrupted += plan.disruptions[replica_type]
        mine = [p for p in current if p.replica_type is replica_type and not p.deleting]
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
                    f"{backoff_limit}.",
                )
            )
        plan.restarts[replica_type] = (restarted, live)
        used += restarted
    if used > backoff_limit:
        plan.problem = _exceeded(job, backoff_limit, used, last_failure)
        return plan

    if deciding_successes(replica_specs, current, success_policy) is not None:
        return plan  # the job succeeded: the status tells
    losses = [loss for p in current if p.uid not in replacing and (loss := loss_of(p)) is not None]
    scope = restart_scope(replica_specs, run_policy)
    group = whole_job_types(replica_specs, scope)
    losses += _missing(job_name, replica_specs, group, current, held, previous, attempt)
    # A counted pod whose delete did not happen (refused, timed out, the operator killed in
    # between) is deleted again, and counted no more.
    plan.replace = [p for p in current if p.uid in replacing and not p.deleting]
    if not losses:
        return plan
    whole = [loss for loss in losses if loss.pod.replica_type in group]

    def retryable(loss: Loss) -> bool:
        return loss.taken is not None or is_retryable(policies[loss.pod.replica_type], loss.pod)  # type: ignore[index]

    if whole:
        # The cause came first: a loss without a time (lost unseen) before any other; in the
        # same second, a disruption before a retried failure before a permanent one, and the
        # launcher's exit (its workers' consequence) last.
        first = min(
            whole,
            key=lambda loss: (
                loss.at is not None,
                loss.at or now,
                loss.taken is None,
                not retryable(loss),
                loss.pod.replica_type is ReplicaType.LAUNCHER,
            ),
        )
        if not retryable(first):
            # A permanent failure fails the job (the status tells), once no peer of the
            # attempt that still runs can turn out to have been taken or killed first.
            plan.settling = _settling(first, current, group, previous, now)
            return plan
        causes = [first]
    else:
        if any(not retryable(loss) for loss in losses):
            return plan  # a permanent failure of a pod replaced alone: the status fails the job
        causes = losses

    failures = [c for c in causes if c.taken is None]
    taken = [c for c in causes if c.taken is not None]
    if used + len(failures) > backoff_limit:
        plan.problem = _exceeded(
            job, backoff_limit, used + len(failures), failures[0].describe().rstrip(".")
        )
        return plan
    if disrupted + len(taken) > disruption_limit:
        plan.problem = Problem(
            DISRUPTION_LIMIT_EXCEEDED,
            f"{job} has failed: the cluster took its pods {disrupted + len(taken)} times, and "
            f"runPolicy.disruptionLimit is {disruption_limit}. The last: "
            f"{taken[0].describe()}.",
        )
        return plan
    for cause in causes:
        kind = cause.pod.replica_type
        assert kind is not None
        if cause.taken is None:
            restarted, live = plan.restarts[kind]
            plan.restarts[kind] = (restarted + 1, live)
        else:
            plan.disruptions[kind] += 1
    numbers = _numbering(used, disrupted, backoff_limit, disruption_limit)

    if whole:
        (cause,) = causes
        plan.counted["job"] = 1
        plan.new_attempt = True
        plan.attempt = attempt + 1
        plan.replace = [p for p in pods if not p.deleting]
        plan.replacing = []
        plan.restarting = (
            f"{job} is restarting every pod as attempt {plan.attempt}: {cause.describe()}."
        )
        plan.events.append(
            JobEvent(
                "Warning",
                RESTARTING,
                f"{cause.describe()}; restarting every pod as attempt {plan.attempt} "
                f"({numbers(cause)}).",
            )
        )
        for replica_type, (restarted, _) in plan.restarts.items():
            plan.restarts[replica_type] = (restarted, 0)  # every current pod goes
        return plan

    plan.counted["pod"] = len(causes)
    for cause in causes:
        pod = cause.pod
        assert pod.replica_type is not None
        plan.replacing.append(pod.uid)
        if not pod.deleting:
            plan.replace.append(pod)
            restarted, live = plan.restarts[pod.replica_type]
            # The replaced pod's container restarts are counted already; they leave with it.
            plan.restarts[pod.replica_type] = (restarted, live - pod.restarts)
        plan.events.append(
            JobEvent(
                "Warning",
                RESTARTING,
                f"{cause.describe()}; replacing the pod ({numbers(cause)}).",
            )
        )
    others = f" and {len(causes) - 1} more pod(s)" if len(causes) > 1 else ""
    plan.restarting = f"{job} is replacing {causes[0].describe()}{others}."
    return plan


def _numbering(
    used: int, disrupted: int, backoff_limit: int, disruption_limit: int
) -> Callable[[Loss], str]:
    """How each restart's event counts it: "restart 2 of backoffLimit 6", or a disruption's
    number, saying that the retry budget is not spent."""
    counts = {"failure": used, "taken": disrupted}

    def number(loss: Loss) -> str:
        if loss.taken is None:
            counts["failure"] += 1
            return f"restart {counts['failure']} of backoffLimit {backoff_limit}"
        counts["taken"] += 1
        return (
            f"disruption {counts['taken']} of disruptionLimit {disruption_limit}; "
            "backoffLimit is not spent"
        )

    return number


def _missing(
    job_name: str,
    replica_specs: ReplicaSpecs,
    group: set[ReplicaType],
    current: list[PodObservation],
    held: frozenset[str],
    previous: TensorFlowJobStatus | None,
    attempt: int,
) -> list[Loss]:
    """Members of a running attempt that are gone although nobody saw them go (deleted or lost
    while the operator was down or its watch re-listed): taken. A collective's member is never
    made again into the attempt it left. An attempt runs once a member other than the
    launcher has started; a type's member was there once the status counted all of its pods
    (a create that failed leaves a member missing that was never there, and it is made)."""
    counted = (previous.replica_statuses if previous else None) or {}
    members = {
        t
        for t in group - {ReplicaType.LAUNCHER, ReplicaType.EVALUATOR}
        if (was := counted.get(t.value)) is not None
        and was.active + was.succeeded + was.failed >= dict(replica_specs.items())[t].replicas
    }
    started = any(
        p.replica_type in members and p.phase in ("Running", "Succeeded", "Failed") for p in current
    )
    if not started:
        return []
    present = {(p.replica_type, p.index) for p in current}
    return [
        Loss(
            PodObservation(
                name=name,
                replica_type=replica_type,
                index=index,
                phase="Failed",
                deleting=True,
                uid=f"missing/{name}",
                attempt=attempt,
            ),
            MISSING,
            None,
        )
        for replica_type, spec in replica_specs.items()
        if replica_type in members
        for index in range(spec.replicas)
        if (replica_type, index) not in present
        and (name := pod_name(job_name, replica_type, index)) not in held
    ]


def _settling(
    first: Loss,
    current: list[PodObservation],
    group: set[ReplicaType],
    previous: TensorFlowJobStatus | None,
    now: dt.datetime,
) -> Settling | None:
    """The wait of a permanent failure while a peer of the attempt still runs: the peer's own
    end, not yet reported, may have been the cause (a killed worker's 137 after its peer's exit
    1). The window starts with the failure and is kept on the status, so an operator restart
    in between decides at the same moment."""
    running = [
        p
        for p in current
        if p.phase in ("Pending", "Running")
        and not p.deleting
        and p.replica_type in group
        and p.uid != first.pod.uid
    ]
    if not running:
        return None
    held = previous.settling if previous is not None else None
    if held is not None:
        failed_at, decide_at = held.failed_at, held.decide_at
    else:
        failed_at = first.at or now
        decide_at = failed_at + dt.timedelta(seconds=SETTLE_SECONDS)
    if now >= decide_at:
        return None
    return Settling(pod=first.pod.name, failed_at=failed_at, decide_at=decide_at)


def _container_restart(pod: PodObservation) -> str:
    code = f" after exit code {pod.last_exit_code}" if pod.last_exit_code is not None else ""
    return f"{pod.describe()}: the kubelet restarted its container{code}, {pod.restarts} time(s)"


def _exceeded(job: str, limit: int, used: int, last: str) -> Problem:
    return Problem(
        BACKOFF_LIMIT_EXCEEDED,
        f"{job} has failed: it needed restart {used} but runPolicy.backoffLimit is {limit}. "
        f"The last failure: {(last or 'unknown').rstrip('.')}.",
    )
