"""What a pass observes of a job's children: a pod's observation parsed from its body, the
children the cache holds, and a Problem that stops the job. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tfjob_operator.api.labels import (
    ATTEMPT_LABEL,
    REPLICA_INDEX_LABEL,
    REPLICA_TYPE_LABEL,
    SPEC_HASH_ANNOTATION,
)
from tfjob_operator.api.v1alpha1 import (
    GROUP,
    KIND,
    ReplicaType,
)

from .topology import TRAINER_CONTAINER

_TYPE_BY_LABEL = {t.value.lower(): t for t in ReplicaType}


@dataclass(frozen=True, slots=True)
class PodObservation:
    """What the operator keeps of one pod: enough to decide, small enough to cache thousands."""

    name: str
    replica_type: ReplicaType | None
    index: int | None
    phase: str
    ready: bool = False
    deleting: bool = False
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    finished_at: str | None = None  # when its trainer container ended (RFC 3339, seconds)
    waiting_reason: str | None = None  # why it cannot start (Unschedulable, ErrImagePull...)
    waiting_message: str | None = None
    uid: str = ""
    owner_uid: str | None = None  # the uid of its controller (the job that made it)
    spec_hash: str | None = None  # what the operator put in it, as the builder hashed it
    restarts: int = 0  # container restarts the kubelet made in it
    last_exit_code: int | None = None  # the exit that made the kubelet restart a container
    attempt: int = 1  # the run of the whole job it belongs to
    # Why the cluster took the pod, if it did (its DisruptionTarget condition's reason, or the
    # kubelet's: Evicted, OutOfcpu...), and when that began (RFC 3339).
    disruption: str | None = None
    disrupted_at: str | None = None
    deletion_began: str | None = None  # when someone asked to delete it (RFC 3339)

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodObservation:
        metadata = pod.get("metadata", {})
        labels = metadata.get("labels") or {}
        status = pod.get("status") or {}
        try:
            index: int | None = int(labels.get(REPLICA_INDEX_LABEL, ""))
        except ValueError:
            index = None
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        exit_code, reason, message, finished_at = _termination(status)
        waiting_reason, waiting_message = _waiting(status)
        restarts, last_exit_code = _restarts(status)
        disruption, disrupted_at = _disruption(status)
        try:
            attempt = int(labels.get(ATTEMPT_LABEL, "1"))
        except ValueError:
            attempt = 1
        return cls(
            name=metadata.get("name", ""),
            replica_type=_TYPE_BY_LABEL.get(labels.get(REPLICA_TYPE_LABEL, "")),
            index=index,
            phase=status.get("phase") or "Pending",
            ready=ready,
            deleting=metadata.get("deletionTimestamp") is not None,
            exit_code=exit_code,
            reason=reason,
            message=message,
            finished_at=finished_at,
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            uid=metadata.get("uid", ""),
            owner_uid=controller_uid(metadata),
            spec_hash=(metadata.get("annotations") or {}).get(SPEC_HASH_ANNOTATION),
            restarts=restarts,
            last_exit_code=last_exit_code,
            attempt=attempt,
            disruption=disruption,
            disrupted_at=disrupted_at,
            deletion_began=_deletion_began(metadata),
        )

    def describe(self) -> str:
        """`Worker 1 (pod x-worker-1)`: how events and conditions name a pod."""
        kind = self.replica_type.value if self.replica_type else "pod"
        return f"{kind} {self.index} (pod {self.name})"


def controlled_by_a_job(metadata: dict[str, Any]) -> bool:
    """Whether a TensorFlowJob controls the object: only then is it one of the operator's. A
    label anyone can write; a pod of somebody else's with the job label is not cached."""
    return any(
        ref.get("controller")
        and ref.get("kind") == KIND
        and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
        for ref in metadata.get("ownerReferences") or []
    )


def controller_uid(metadata: dict[str, Any]) -> str | None:
    """The uid of an object's controlling owner, if it has one."""
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _restarts(status: dict[str, Any]) -> tuple[int, int | None]:
    """How often the kubelet restarted the pod's containers, and the exit of the last restart."""
    count, code = 0, None
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        restarted = int(container.get("restartCount") or 0)
        if restarted:
            count += restarted
            last = ((container.get("lastState") or {}).get("terminated") or {}).get("exitCode")
            if code is None or container.get("name") == TRAINER_CONTAINER:
                code = last if last is not None else code
    return count, code


# Pod reasons the kubelet gives a pod it ended or refused for the node's sake, not the pod's:
# node-pressure eviction, a graceful node shutdown, a node that cannot admit it any more.
_KUBELET_DISRUPTIONS = ("Evicted", "Preempting", "Terminated", "NodeLost", "NodeShutdown")


def _disruption(status: dict[str, Any]) -> tuple[str | None, str | None]:
    """Why and since when the cluster took the pod: the DisruptionTarget condition (the Eviction
    API, kube-scheduler's preemption, the taint manager, the pod garbage collector, the
    kubelet), else a kubelet reason for a pod it ended or could not admit (OutOfcpu...)."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return condition.get("reason") or "DisruptionTarget", condition.get(
                "lastTransitionTime"
            )
    reason = status.get("reason") or ""
    if status.get("phase") == "Failed" and (
        reason in _KUBELET_DISRUPTIONS
        or reason.startswith("OutOf")
        or reason == "UnexpectedAdmissionError"
    ):
        return reason, None
    return None, None


def moment(value: str | None) -> dt.datetime | None:
    """An RFC 3339 time from a pod's status or metadata (UTC when it names no zone)."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _deletion_began(metadata: dict[str, Any]) -> str | None:
    """When the pod's deletion was asked for: its deletionTimestamp is when the grace period
    ends, so the grace period before it."""
    stamp = metadata.get("deletionTimestamp")
    if not stamp:
        return None
    ends = moment(stamp)
    if ends is None:
        return stamp
    grace = metadata.get("deletionGracePeriodSeconds") or 0
    began = ends - dt.timedelta(seconds=int(grace))
    return began.isoformat().replace("+00:00", "Z")


# Container waiting reasons that are just a pod starting, not something in its way.
_STARTING = {"ContainerCreating", "PodInitializing"}


def _waiting(status: dict[str, Any]) -> tuple[str | None, str | None]:
    """Why a pod that is not running yet cannot start: the scheduler's verdict, else a
    container's waiting reason (an image that cannot be pulled, a missing Secret...)."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return condition.get("reason") or "Unschedulable", condition.get("message")
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in _STARTING:
            return reason, f"container {container.get('name')}: {waiting.get('message') or reason}"
    return None, None


def _termination(
    status: dict[str, Any],
) -> tuple[int | None, str | None, str | None, str | None]:
    """The trainer container's exit (else the first failed container's, else a failed init
    container's) and when it ended, or the pod's reason."""
    statuses = status.get("containerStatuses") or []
    ordered = sorted(statuses, key=lambda s: s.get("name") != TRAINER_CONTAINER)
    for container in ordered:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated and (
            terminated.get("exitCode") or container.get("name") == TRAINER_CONTAINER
        ):
            # A pod-level reason (Evicted, DeadlineExceeded...) says why the container died.
            return (
                terminated.get("exitCode"),
                status.get("reason") or terminated.get("reason"),
                status.get("message") or terminated.get("message"),
                terminated.get("finishedAt"),
            )
    # An init container that failed (a package install, say): the others never started.
    for container in status.get("initContainerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode"):
            said = (terminated.get("message") or "").strip()
            return (
                terminated.get("exitCode"),
                status.get("reason") or terminated.get("reason"),
                f"init container {container.get('name')}" + (f": {said}" if said else ""),
                terminated.get("finishedAt"),
            )
    # A pod failed from outside (its node lost, an eviction, a preemption) says why in its
    # DisruptionTarget condition, e.g. DeletionByPodGC "PodGC: node no longer exists".
    disruption = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        ),
        {},
    )
    return (
        None,
        status.get("reason") or disruption.get("reason"),
        status.get("message") or disruption.get("message"),
        None,
    )


@dataclass(frozen=True)
class Problem:
    """Something that stops the job for good before or outside its pods (reason, message)."""

    reason: str
    message: str


def describe_failure(pod: PodObservation) -> str:
    what = pod.describe()
    if pod.exit_code is not None:
        text = f"{what} exited with code {pod.exit_code}"
    else:
        text = f"{what} failed"
    if pod.reason:
        text += f" ({pod.reason})"
    if pod.message:
        text += f": {pod.message.strip()}"
    return text


@dataclass(frozen=True)
class Observed:
    """What the cache holds of a job's children (any owner: ``decide`` keeps the job's own)."""

    pods: tuple[PodObservation, ...] = ()
    # controller uid of the Service named as the job (one, or none; two only while one goes)
    service_owners: tuple[str | None, ...] = ()
    # (kind, name, controller uid) of the Secrets and ConfigMaps an MPI job's pods mount
    objects: tuple[tuple[str, str, str | None], ...] = ()
