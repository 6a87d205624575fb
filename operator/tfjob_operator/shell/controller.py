"""The shell around ``decide``: the cache a pass reads, and the I/O that applies a decision.

A pass (one reconcile of one job) reads the job as the job watch last showed it and its
children from the informers' caches (see ``informer``; passes wait until each has listed once,
so none sees a half-listed world); it never LISTs or GETs. All the controller keeps of a job
is one ``JobState`` record: the body, the operator's own writes the watch has not shown yet
(``expectations``), and the bookkeeping of its passes. So a job's own status write coming back
through the watch causes no second pass, a pass right after a create does not create the pod
again, and forgetting a job is one deletion.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from tfjob_operator.api.labels import REPLICA_TYPE_LABEL
from tfjob_operator.api.v1alpha1 import (
    PLURAL,
    RECONCILE_FAILURES_REPORTED,
    ConditionType,
    ReconcileFailure,
)
from tfjob_operator.core.builders import JobRef, mpi_ssh_secret
from tfjob_operator.core.compile import CompiledJob, compile_job
from tfjob_operator.core.decide import Decision, decide
from tfjob_operator.core.events import JobEvent
from tfjob_operator.core.observed import Observed, PodObservation, Problem
from tfjob_operator.settings import OperatorSettings

from . import metrics
from .expectations import Expectations
from .informer import Informer
from .kube import Conflict, Forbidden, Kube, NotFound, Rejected
from .listwatch import ListWatch
from .outbox import Outbox
from .ssh_keys import generate_ssh_keypair
from .workqueue import RetryLater, WorkQueue

log = logging.getLogger(__name__)

T = TypeVar("T", covariant=True)

JobKey = tuple[str, str]  # (namespace, name)


class ChildCache(Protocol[T]):
    """Observations of a job's children (an ``Informer``; a dict in unit tests)."""

    def get(self, key: JobKey, default: Iterable[T] = ..., /) -> Iterable[T]: ...


# How long a status write that only changes pod counts (ready, replicaStatuses) waits at least,
# and at most while pods are still starting.
COUNTS_DELAY = 10.0
COUNTS_MAX_DELAY = 30.0
MAX_LIST_DELAY = 30.0  # between tries to read the jobs again on resuming
FINISHED = (ConditionType.SUCCEEDED.value, ConditionType.FAILED.value)
# Created before the pods, which mount them (Secret, ConfigMap) or join them (PodGroup).
_FIRST = ("Secret", "ConfigMap", "PodGroup")


def _finished(body: Mapping[str, Any]) -> bool:
    """Whether the job's status says it ended."""
    return any(
        c.get("type") in FINISHED and c.get("status") == "True"
        for c in (body.get("status") or {}).get("conditions") or []
    )


def _resource_version(body: Mapping[str, Any]) -> int | None:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def _is_older(candidate: JobState, current: JobState) -> bool:
    """Whether ``candidate`` is an older version of the same job than ``current``."""
    if candidate.uid != current.uid:
        return False
    new, old = candidate.version, current.version
    return new is not None and old is not None and new < old


# What a cached job body goes without: no pass reads them, and they are as large as the rest
# (every field's manager and time; client-side apply's copy of the whole manifest).
_UNREAD_METADATA = ("managedFields",)
_UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def kept(body: dict[str, Any]) -> dict[str, Any]:
    """The job as the operator keeps it: ``body`` less what no pass reads."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if not any(k in metadata for k in _UNREAD_METADATA) and not any(
        k in annotations for k in _UNREAD_ANNOTATIONS
    ):
        return body
    metadata = {k: v for k, v in metadata.items() if k not in _UNREAD_METADATA}
    if annotations:
        metadata["annotations"] = {
            k: v for k, v in annotations.items() if k not in _UNREAD_ANNOTATIONS
        }
    return {**body, "metadata": metadata}


@dataclasses.dataclass(slots=True)
class JobState:
    """All the controller keeps of one job: replaced whole when the name comes back as a new
    job (another uid), dropped whole when the job goes.

    A finished job that a pass left with nothing to do is kept ``frozen``: its body as compact
    JSON (a fifth of the dicts' memory), its compiled spec dropped. The next pass, or anything
    else that reads the body, thaws it. Ten thousand finished jobs then cost tens of megabytes,
    not hundreds."""

    _body: dict[str, Any] | None  # the job as last seen (or as its status write returned it)
    settled: int | None = None  # resourceVersion a pass finished with
    compiled: tuple[tuple[str, int | None], CompiledJob] | None = None  # by (uid, generation)
    # The operator's writes not yet seen (made on first use; a frozen job has none).
    _expected: Expectations | None = None
    failing_since: dt.datetime | None = None  # when its passes began to fail
    counts_since: float | None = None  # when unwritten count changes began
    denied: str | None = None  # the refusal already reported on it
    # Pods removed before a pass saw them go (see Controller.pod_deleted): kept until a pass
    # has acted on them.
    lost: dict[str, PodObservation] = dataclasses.field(default_factory=dict)
    _frozen: bytes | None = None
    # Of the body, kept beside it so that a frozen job need not be thawed to be told apart.
    uid: str = dataclasses.field(init=False)
    version: int | None = dataclasses.field(init=False)  # its resourceVersion
    key: JobKey = dataclasses.field(init=False)  # (namespace, name)
    finished: bool = dataclasses.field(init=False)  # its status says it ended

    def __post_init__(self) -> None:
        assert self._body is not None
        self.body = self._body

    @property
    def expected(self) -> Expectations:
        if self._expected is None:
            self._expected = Expectations()
        return self._expected

    @property
    def expected_if_any(self) -> Expectations | None:
        """``expected`` without making it: None while the job has none."""
        return self._expected

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            assert self._frozen is not None
            self._body, self._frozen = json.loads(self._frozen), None
        return self._body

    @body.setter
    def body(self, value: dict[str, Any]) -> None:
        self._body, self._frozen = value, None
        metadata = value["metadata"]
        self.uid = str(metadata["uid"])
        self.version = _resource_version(value)
        self.key = (metadata["namespace"], metadata["name"])
        self.finished = _finished(value)

    def take_body(self, other: JobState) -> None:
        """``other``'s body (a newer version of the same job), frozen or not as it is there."""
        self._body, self._frozen = other._body, other._frozen
        self.uid, self.version, self.key = other.uid, other.version, other.key
        self.finished = other.finished

    def anew(self) -> JobState:
        """The same job (its body as it is kept here), with nothing remembered of passes."""
        namespace, name = self.key
        fresh = JobState({"metadata": {"uid": self.uid, "namespace": namespace, "name": name}})
        fresh.take_body(self)
        return fresh

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def freeze(self) -> None:
        """Keep the body as JSON and drop the compiled spec, until something reads it again."""
        if self._body is not None:
            self._frozen = json.dumps(self._body, separators=(",", ":")).encode()
            self._body = None
        self.compiled = None
        if self._expected is not None and self._expected.empty():
            self._expected = None  # fewer objects for the garbage collector to walk


def listed_job(body: dict[str, Any]) -> JobState:
    """What a list of jobs keeps of each, page by page: its record, frozen if it finished
    (an operator starting among ten thousand finished jobs never holds them all as dicts)."""
    state = JobState(kept(body))
    if state.finished:
        state.freeze()
    return state


class Controller:
    """Everything between the watches and the API server's write endpoints."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.pods: ChildCache[PodObservation] = {}
        self.services: ChildCache[tuple[str, str | None]] = {}
        # ConfigMaps of MPI jobs, by kind: (name, owner). (Secrets are never read: see decide.)
        self.mounted: dict[str, ChildCache[tuple[str, str | None]]] = {}
        self._synced: list[asyncio.Event] = []
        # Events trickle out a few at a time, bounded per job: when a thousand jobs start, the
        # pods' creates and the status writes go first, the Events that tell of them follow.
        self.outbox = Outbox(kube.post_event)
        self.jobs: dict[JobKey, JobState] = {}
        self.queue = WorkQueue(self._work, max_concurrent=settings.max_concurrent_passes)
        self.job_states = metrics.JobStates()
        # Scopes (a namespace, None: cluster-wide) whose passes wait for this replica's turn in
        # a peering of several replicas (see peering.py); caches stay warm meanwhile.
        self._paused: set[str | None] = set()
        self._resuming: dict[str | None, asyncio.Task[None]] = {}
        self.job_watch: ListWatch | None = None
        self._counts: Callable[[str], bool] = lambda _: True

    async def drain(self) -> None:
        """Wait for running passes and the events they post (tests and shutdown)."""
        await self.queue.drain()
        await self.outbox.drain()

    def watch_children(
        self,
        pods: ChildCache[PodObservation],
        services: ChildCache[tuple[str, str | None]],
        mounted: dict[str, ChildCache[tuple[str, str | None]]] | None = None,
    ) -> None:
        """Read children from these caches (``mounted``: the ConfigMaps of MPI jobs, by kind);
        passes wait until each has listed once."""
        self.pods, self.services, self.mounted = pods, services, mounted or {}
        caches = (pods, services, *self.mounted.values())
        self._synced = [c.synced for c in caches if isinstance(c, Informer)]

    def watch_jobs(self, jobs: ListWatch, counts: Callable[[str], bool] = lambda _: True) -> None:
        """Take the jobs from this list-watch (``counts``: which namespaces are ours, when the
        operator's namespaces are patterns); resuming a paused scope re-lists through it."""
        self.job_watch = jobs
        self._counts = counts

    # ----- what the watches tell -------------------------------------------------------------
    def jobs_listed(self, scope: str | None, listed: list[JobState | dict[str, Any]]) -> None:
        """A fresh list of a scope's jobs (as ``listed_job`` keeps them, or bodies): those it
        lacks went while no watch showed it (a watch that lists again after 410 Gone, a replica
        resuming its turn)."""
        states = [s if isinstance(s, JobState) else listed_job(s) for s in listed]
        ours = [s for s in states if self._counts(s.key[0])]
        keys = {s.key for s in ours}
        for key in self._keys_in(scope):
            if key not in keys:
                self.job_gone(*key)
        for state in ours:
            self._seen(state)

    def job_event(self, kind: str, body: dict[str, Any]) -> None:
        """One event of the job watch."""
        metadata = body.get("metadata") or {}
        if not self._counts(metadata.get("namespace", "")):
            return
        if kind != "DELETED":
            self.job_seen(body)
            return
        state = self.jobs.get((metadata["namespace"], metadata["name"]))
        if state is not None and state.uid == metadata.get("uid"):
            self.job_gone(metadata["namespace"], metadata["name"])

    def job_seen(self, body: dict[str, Any]) -> None:
        """A job was added or changed: keep it and ask for a pass unless nothing is new."""
        self._seen(JobState(kept(body)))

    def _seen(self, seen: JobState) -> None:
        key = seen.key
        state = self.jobs.get(key)
        if state is not None and _is_older(seen, state):
            return  # the status write this operator made is newer
        if state is None or state.uid != seen.uid:
            if state is not None:
                self.queue.forget(key)  # the old job's backoff is not the new one's
            state = self.jobs[key] = seen  # a new job, or the same name for one
        elif state.version is None or state.version != seen.version:
            state.take_body(seen)  # (the same version is the same job: a frozen one stays so)
        if seen.version is not None and state.settled == seen.version:
            return  # the version a pass already finished with: its own write coming back
        # A finished job not yet passed (on starting, among the history; on resuming a turn)
        # waits behind the rest.
        self.queue.trigger(key, background=state.settled is None and seen.finished)

    def job_gone(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.jobs.pop(key, None)
        self.queue.forget(key)
        self.job_states.forget(key)

    def set_turn(self, scope: str | None, working: bool, why: str) -> None:
        """Pause or resume the passes over a scope's jobs (another replica works them
        meanwhile). What this replica remembers of its own writes is dropped on pausing; on
        resuming, the scope's jobs are read afresh (the watch may not yet show the other
        replica's last writes, and a pass over a stale job would undo its work), then each gets
        a pass."""
        where = f"in {scope}" if scope else "cluster-wide"
        resuming = self._resuming.pop(scope, None)
        if resuming is not None:
            resuming.cancel()
        if not working:
            self._paused.add(scope)
            for key in self._keys_in(scope):
                self.jobs[key] = self.jobs[key].anew()  # the other replica's now
                self.queue.forget(key)
            log.info("passes paused %s: %s", where, why)
            return
        log.info("passes resume %s once its jobs are read again: %s", where, why)
        self._resuming[scope] = asyncio.get_running_loop().create_task(self._resume(scope))

    async def _resume(self, scope: str | None) -> None:
        assert self.job_watch is not None, "watch_jobs first"
        delay = 1.0
        while True:
            try:
                jobs, _ = await self.job_watch.list_all(scope)
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - retried until it works or we pause
                log.warning("reading the jobs to resume failed (%s); again in %.0f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(MAX_LIST_DELAY, delay * 2)
        self.jobs_listed(scope, jobs)
        self._paused.discard(scope)
        self._resuming.pop(scope, None)
        log.info(
            "passes resumed %s: %d jobs read", f"in {scope}" if scope else "cluster-wide", len(jobs)
        )
        for key in self._keys_in(scope):
            self.queue.trigger(key, background=self.jobs[key].finished)

    def _keys_in(self, scope: str | None) -> list[JobKey]:
        return [key for key in self.jobs if scope is None or key[0] == scope]

    def _may_work(self, key: JobKey) -> bool:
        return not self._paused or (None not in self._paused and key[0] not in self._paused)

    def pod_deleted(self, key: JobKey, pod: PodObservation, before: PodObservation | None) -> None:
        """A pod removed, with its last state and its state before its deletion began. A pass
        may never have seen it go (a force delete, the pod garbage collector with a lost node,
        a re-list after the watch broke): it is kept for the next pass, which counts it as a
        failure if it had failed before its deletion began, else as taken by the cluster,
        unless the operator deleted it itself (then the pass drops it). Kept while another
        replica has the turn too: whichever replica passes next counts it, once (the status
        says what was counted)."""
        state = self.jobs.get(key)
        if state is None or pod.owner_uid != state.uid:
            return  # a stranger's pod (only in the way) or another job's of the same name
        if before is not None and before.phase in ("Failed", "Succeeded") and not before.deleting:
            # It ended before anyone deleted it: its end decides (a success too).
            state.lost[pod.uid] = dataclasses.replace(pod, deleting=False)
        elif pod.phase == "Succeeded":
            return  # ended well while going: nothing to count
        else:
            state.lost[pod.uid] = dataclasses.replace(pod, deleting=True)

    def children_changed(self, key: JobKey) -> None:
        if key in self.jobs:
            self.queue.trigger(key)

    def pod_foreseen(self, key: JobKey, pod: PodObservation) -> bool:
        """Whether a pod first seen is exactly what a pass of its job created: that pass
        counted it (as the create answered), so a pass now would find nothing new."""
        state = self.jobs.get(key)
        expected = state.expected_if_any if state is not None else None
        made = expected.created.get(pod.name) if expected is not None else None
        return made is not None and made[1] == pod

    def service_foreseen(self, key: JobKey, service: tuple[str, str | None]) -> bool:
        """Whether a Service first seen is the job's own that a pass of it just created."""
        state = self.jobs.get(key)
        expected = state.expected_if_any if state is not None else None
        return (
            state is not None
            and expected is not None
            and expected.service is not None
            and service == (key[1], state.uid)
        )

    # ----- one pass ----------------------------------------------------------------------------
    def compiled(self, state: JobState) -> CompiledJob:
        """The job's compiled spec, parsed once per generation."""
        version = (state.uid, state.body["metadata"].get("generation"))
        if state.compiled is None or state.compiled[0] != version:
            state.compiled = (version, compile_job(state.body.get("spec"), self.settings))
        return state.compiled[1]

    def observe(self, key: JobKey) -> Observed:
        """The cache's view of a job's children, with the operator's own unseen writes."""
        return self._observe(self.jobs[key])[0]

    def _observe(self, state: JobState) -> tuple[Observed, float | None]:
        """``observe``, and when a name held by somebody else is due to be tried again."""
        key = state.key
        pods = list(self.pods.get(key, ()))
        service_owners = tuple(
            owner for name, owner in self.services.get(key, ()) if name == key[1]
        )
        objects = [
            (kind, name, owner)
            for kind, cache in self.mounted.items()
            for name, owner in cache.get(key, ())
        ]
        if state.lost:
            live = {p.name for p in pods}
            for uid, pod in list(state.lost.items()):
                if uid in state.expected.deleted or pod.name in live:
                    del state.lost[uid]  # the operator's own delete, or replaced already
            pods += state.lost.values()
        seen = Observed(tuple(pods), service_owners, tuple(objects))
        return state.expected.merge(seen, key[1], state.uid, time.monotonic())

    async def reconcile(self, key: JobKey) -> str | None:
        """One pass; returns the job's state afterwards (None: the job is gone or going)."""
        state = self.jobs.get(key)
        if state is None or state.body["metadata"].get("deletionTimestamp"):
            return None
        job = state.body
        lost = set(state.lost)  # acted on by this pass if it completes
        compiled = self.compiled(state)
        observed, recheck = self._observe(state)
        if recheck is not None:
            self.queue.trigger_after(key, recheck)  # then a pass tries to create it again
        decision = decide(job, compiled, observed, self.settings, self.clock())
        if decision.status_first and decision.status is not None:
            # Restarts are on the status before their pods go.
            if not await self._status_written(key, state, decision):
                return decision.state if self.jobs.get(key) is state else None
            job = state.body
            decision.status = None
        try:
            refused = await self._apply_children(state, decision)
        except NotFound as missing:
            if f'namespaces "{key[0]}" not found' not in missing.message:
                raise  # an API the cluster stopped serving, say: not the job's end
            # A create in a namespace that is gone: so is the job, whatever its watch says.
            self._vanished(key, state)
            return None
        if refused is not None:
            observed, _ = self._observe(state)
            decision = decide(job, compiled, observed, self.settings, self.clock(), refused=refused)
            await self._apply_children(state, decision)
        if any(state.lost[uid].phase == "Succeeded" for uid in lost if uid in state.lost):
            # A success whose pod is gone lives on in the status alone (its completed
            # indexes): written now, before this pass forgets the pod.
            decision.status_urgent = True
        if decision.status is None:
            state.counts_since = None  # nothing waits to be written
        elif self._may_wait(key, state, decision):
            # The events tell of the changes this status records: both wait for the next pass,
            # which decides them again.
            decision.status, decision.events = None, []
        if decision.status is not None:
            if not await self._status_written(key, state, decision):
                return decision.state if self.jobs.get(key) is state else None
            job = state.body
        state.settled = _resource_version(job)
        for uid in lost:
            state.lost.pop(uid, None)
        if lost:
            # What this pass decided with them (a new attempt waiting for its earlier pods,
            # say) is decided again without them: nothing else may come to trigger it.
            self.queue.trigger(key)
        for scope, count in decision.restarts.items():
            metrics.RESTARTS.labels(scope=scope).inc(count)
        if decision.events:
            # Posted after the status write that records them, without holding the pass's slot:
            # a slot is worth a round trip to the API server when a thousand jobs start.
            self.outbox.add(job, decision.events)
        if decision.delete_job:
            log.info("%s/%s: finished and past its ttlSecondsAfterFinished: deleting it", *key)
            await self.kube.delete_job(job)
            self._vanished(key, state)
        elif decision.look_again_after is not None:
            self.queue.trigger_after(key, decision.look_again_after)
        if decision.state in FINISHED and not (decision.create or decision.delete or state.lost):
            state.freeze()  # finished, and nothing in flight: history, kept small
        return decision.state

    def _vanished(self, key: JobKey, state: JobState) -> None:
        """The job answered 404 to a write (or was just deleted by its TTL): it is gone, with
        all it had, whatever its watch has (not yet) said. A new job of the same name that the
        watch brought meanwhile has a record of its own, and stays."""
        if self.jobs.get(key) is state:
            log.info("%s/%s: gone", *key)
            self.job_gone(*key)

    async def _status_written(self, key: JobKey, state: JobState, decision: Decision) -> bool:
        """Write the decided status; False ends the pass: the job changed since the watch
        showed it (its newer version's event, come or coming, runs the next pass), or it is
        gone (a 404: forgotten)."""
        try:
            await self._write_status(state, decision)
        except Conflict:
            log.debug("%s/%s: status write raced a change; waiting for it", *key)
            return False
        except NotFound:
            self._vanished(key, state)
            return False
        return True

    async def _write_status(self, state: JobState, decision: Decision) -> None:
        assert decision.status is not None
        state.counts_since = None
        job = state.body
        stored = await self.kube.write_status(job, decision.status)
        if (job.get("status") or {}).get("state") != decision.state:
            metadata = job["metadata"]
            log.info("%s/%s: %s", metadata["namespace"], metadata["name"], decision.state)
        state.body = kept(stored)

    def _may_wait(self, key: JobKey, state: JobState, decision: Decision) -> bool:
        """Whether a status write that only changes pod counts can wait, to take later count
        changes along: until the pods settle (none Pending or starting) and COUNTS_DELAY has
        passed, and never longer than COUNTS_MAX_DELAY. A job whose pods start one by one then
        costs one count write, not one per pod."""
        if decision.status_urgent:
            return False
        now = time.monotonic()
        if state.counts_since is None:
            state.counts_since = now
        waited = now - state.counts_since
        if waited >= COUNTS_MAX_DELAY or (decision.pods_settled and waited >= COUNTS_DELAY):
            return False
        due = COUNTS_DELAY if decision.pods_settled else COUNTS_MAX_DELAY
        self.queue.trigger_after(key, due - waited)
        return True

    async def _apply_children(self, state: JobState, decision: Decision) -> Problem | None:
        """Create (objects pods mount first, then the rest at once) and delete; a refused
        object is returned as the problem that fails the job."""
        metadata = state.body["metadata"]
        key: JobKey = (metadata["namespace"], metadata["name"])
        ref = JobRef(key[1], key[0], state.uid)
        first = [body for body in decision.create if body["kind"] in _FIRST]
        rest = [body for body in decision.create if body["kind"] not in _FIRST]
        if decision.create_ssh_secret:
            recorded = (state.body.get("status") or {}).get("sshSecret")
            secret = mpi_ssh_secret(ref, recorded, *generate_ssh_keypair())
            if recorded is None:
                refused = await self._create_ssh_secret(key, state, decision, secret)
                if refused is not None:
                    return refused
            else:
                first.insert(0, secret)
        for body in first:
            refused = await self._create(key, state.expected, body)
            if refused is not None:
                return refused
        if any(
            (body["kind"], body["metadata"]["name"]) in state.expected.conflicts for body in first
        ):
            return None  # the pods would mount another's Secret or ConfigMap: none for now
        outcomes = await asyncio.gather(*(self._create(key, state.expected, body) for body in rest))
        await asyncio.gather(*(self._delete(key, state.expected, pod) for pod in decision.delete))
        return next((problem for problem in outcomes if problem is not None), None)

    async def _create_ssh_secret(
        self, key: JobKey, state: JobState, decision: Decision, secret: dict[str, Any]
    ) -> Problem | None:
        """Create an MPI job's first key Secret under a name the API server generates, and put
        that name on the status this pass writes: the pods that mount it come next pass."""
        try:
            stored = await self.kube.create(secret)
        except Rejected as rejected:
            return Problem(
                "SecretRejected",
                f"TFJob {key[0]}/{key[1]} has failed: the API server refused its SSH key "
                f"Secret: {rejected.message}",
            )
        if stored is None:
            return None  # a generated name taken (the API server retries): next pass, again
        name = stored["metadata"]["name"]
        log.info("%s/%s: created secret %s", *key, name)
        decision.status = {
            **(decision.status or state.body.get("status") or {}),
            "sshSecret": name,
        }
        decision.status_urgent = True
        return None

    async def _create(
        self, key: JobKey, expected: Expectations, body: dict[str, Any]
    ) -> Problem | None:
        kind, name = body["kind"], body["metadata"]["name"]
        try:
            stored = await self.kube.create(body)
        except Rejected as rejected:
            return Problem(
                "TFJobFailed" if kind == "Pod" else f"{kind}Rejected",
                f"TFJob {key[0]}/{key[1]} has failed: the API server refused "
                f"{kind.lower()} {name}: {rejected.message}",
            )
        if stored is None and kind == "PodGroup" and not await self._ours(body):
            # Its name is the job's and attempt's, known to anyone who reads the job: a group
            # made by somebody else (a minCount the pods can never meet, say) is not joined.
            log.warning("%s/%s: podgroup %s exists and is not the job's", *key, name)
            expected.conflicts[(kind, name)] = time.monotonic()
            self.queue.trigger(key)  # the next pass reports it
        elif stored is None and kind in ("Secret", "PodGroup"):
            pass  # the job's key under the name on its status; the attempt's gang, checked
        elif stored is None:
            # The name is taken. Expectations keep a pass from creating what an earlier one
            # did, so it is somebody else's: the job says so, and looks again in a while
            # (nothing the operator watches tells when it goes).
            log.info("%s/%s: %s %s exists and is not the job's", *key, kind.lower(), name)
            expected.conflicts[(kind, name)] = time.monotonic()
            self.queue.trigger(key)  # the next pass reports it
        elif kind == "Pod":
            expected.created[name] = (time.monotonic(), PodObservation.from_pod(stored))
        elif kind == "Service":
            expected.service = time.monotonic()
        elif kind == "ConfigMap":
            expected.objects[(kind, name)] = time.monotonic()
        if stored is not None:
            if kind == "Pod":
                replica_type = body["metadata"]["labels"].get(REPLICA_TYPE_LABEL, "")
                metrics.PODS_CREATED.labels(replica_type=replica_type).inc()
            log.info("%s/%s: created %s %s", *key, kind.lower(), name)
        return None

    async def _ours(self, body: dict[str, Any]) -> bool:
        """Whether the stored object of ``body``'s name is what the operator would create:
        controlled by the job, with the same scheduling policy. An owner reference anyone may
        write; the policy, then, makes a copy planted by another harmless."""
        stored = await self.kube.read(body)
        if stored is None:
            stored = await self.kube.create(body)  # gone meanwhile: the job's after all
            if stored is not None:
                return True
            stored = await self.kube.read(body)
            if stored is None:
                return False  # coming and going: the next pass tries again
        owner = body["metadata"]["ownerReferences"][0]["uid"]
        controllers = [
            ref.get("uid")
            for ref in stored["metadata"].get("ownerReferences") or []
            if ref.get("controller")
        ]
        policy = (stored.get("spec") or {}).get("schedulingPolicy")
        return controllers == [owner] and policy == body["spec"]["schedulingPolicy"]

    async def _delete(self, key: JobKey, expected: Expectations, pod: PodObservation) -> None:
        log.info("%s/%s: deleting pod %s", *key, pod.name)
        await self.kube.delete_pod(key[0], pod.name, pod.uid)
        expected.deleted[pod.uid] = time.monotonic()

    # ----- the queue's work: one pass, measured, its failures reported -------------------------
    async def _work(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        for synced in self._synced:
            await synced.wait()
        if not self._may_work(key):
            return  # another replica's turn: resuming triggers every job again
        started = time.monotonic()
        try:
            state = await self.reconcile(key)
        except Forbidden as refusal:
            metrics.RECONCILE_SECONDS.labels(result="error").observe(time.monotonic() - started)
            metrics.PERMISSION_DENIED.labels(verb=refusal.verb, resource=refusal.resource).inc()
            self.job_states.seen(key)
            await self._report_permission_problem(key, refusal)
            await self._report_failure(key, str(refusal))
            raise RetryLater(str(refusal)) from refusal
        except Exception as error:
            metrics.RECONCILE_SECONDS.labels(result="error").observe(time.monotonic() - started)
            self.job_states.seen(key)
            await self._report_failure(key, f"{type(error).__name__}: {error}")
            raise
        metrics.RECONCILE_SECONDS.labels(result="success").observe(time.monotonic() - started)
        record = self.jobs.get(key)
        if record is not None:
            record.denied, record.failing_since = None, None
        if state is None or record is None:
            self.job_states.forget(key)  # gone, or going
        else:
            self.job_states.set(key, state)

    async def _report_failure(self, key: JobKey, message: str) -> None:
        """Once passes over a job keep failing, say so on its status (best effort: the status
        write may be what fails)."""
        state = self.jobs.get(key)
        attempts = self.queue.failures(key) + 1
        if state is None:
            return
        if state.failing_since is None:
            state.failing_since = self.clock()
        since, job = state.failing_since, state.body
        if attempts < RECONCILE_FAILURES_REPORTED:
            return
        failure = ReconcileFailure(message=message[:1024], attempts=attempts, since=since)
        status = {
            **(job.get("status") or {}),
            "reconcileFailure": failure.model_dump(by_alias=True, mode="json"),
        }
        try:
            state.body = kept(await self.kube.write_status(job, status))
        except NotFound:
            self._vanished(key, state)
            return
        except Exception as error:  # noqa: BLE001 - the operator's log still says it
            log.warning("could not report the failing passes of %s/%s: %s", *key, error)
            return
        try:
            if attempts == RECONCILE_FAILURES_REPORTED:
                await self.kube.post_event(
                    job,
                    JobEvent(
                        "Warning",
                        "ReconcileFailing",
                        f"The operator's last {attempts} passes over this job failed; it keeps "
                        f"retrying with backoff. Last error: {message}",
                    ),
                )
        except Exception as error:  # noqa: BLE001 - the operator's log still says it
            log.warning("could not report the failing passes of %s/%s: %s", *key, error)

    async def _report_permission_problem(self, key: JobKey, refusal: Forbidden) -> None:
        """Tell the job's owner, once per distinct refusal, why nothing happens to their job."""
        what = f"{refusal.verb} {refusal.resource}"
        state = self.jobs.get(key)
        if state is None or state.denied == what or refusal.resource == PLURAL:
            return  # told already, or the job itself cannot be read: the log says it
        job = state.body
        where = f"in namespace {refusal.namespace}" if refusal.namespace else "cluster-wide"
        event = JobEvent(
            "Warning",
            "PermissionDenied",
            f"The operator is not allowed to {refusal.verb} {refusal.resource} {where}, so it "
            f"cannot run this job; it retries with backoff. An administrator must grant that "
            f"verb in the operator's ClusterRole or Role. API server: {refusal.message}",
        )
        try:
            await self.kube.post_event(job, event)
        except Exception as error:  # noqa: BLE001 - the log line still says it
            log.warning("could not post event PermissionDenied for %s/%s: %s", *key, error)
            return
        state.denied = what
