"""The shell around ``decide``: the cache a pass reads, and the I/O that applies a decision.

The cache is fed by the watches kopf already runs: kopf indexes hold a small observation of
every pod and Service of our jobs, keyed by job (kopf fills them before any handler runs, so a
pass never sees a half-listed world), and the job bodies come from the job watch. A pass never
LISTs or GETs. What the watch has not yet shown of the operator's own writes is kept as short-
lived expectations: a pod just created counts as existing, a pod just deleted as going, and the
job as its status write returned it. So a job's own status write coming back through the watch
causes no second pass, and a pass right after a create does not create the pod again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from tfjob_operator.api.labels import REPLICA_TYPE_LABEL
from tfjob_operator.api.v1alpha1 import (
    GROUP,
    PLURAL,
    RECONCILE_FAILURES_REPORTED,
    VERSION,
    ReconcileFailure,
)
from tfjob_operator.core.builders import JobRef, mpi_ssh_secret
from tfjob_operator.core.compile import CompiledJob, compile_job
from tfjob_operator.core.decide import Decision, decide
from tfjob_operator.core.events import JobEvent
from tfjob_operator.core.observed import Observed, PodObservation, Problem
from tfjob_operator.settings import OperatorSettings
from tfjob_operator.shell.ssh_keys import generate_ssh_keypair

from . import metrics
from .informer import Informer
from .kube import Conflict, Forbidden, Kube, Rejected
from .workqueue import RetryLater, WorkQueue

log = logging.getLogger(__name__)

T = TypeVar("T", covariant=True)

JobKey = tuple[str, str]  # (namespace, name)


class ChildCache(Protocol[T]):
    """Observations of a job's children (an ``Informer``; a dict in unit tests)."""

    def get(self, key: JobKey, default: Iterable[T] = ..., /) -> Iterable[T]: ...


# How long an object the operator created (or deleted) counts as such without the watch showing
# it; far longer than a watch takes, short enough that a lost event heals itself.
EXPECTATION_SECONDS = 30.0
EVENT_CONCURRENCY = 4
# How long a status write that only changes pod counts (ready, replicaStatuses) waits at least,
# and at most while pods are still starting.
# How long a name the API server said is taken counts as somebody else's before a pass tries
# to create it again.
CONFLICT_RECHECK_SECONDS = 10.0
COUNTS_DELAY = 10.0
COUNTS_MAX_DELAY = 30.0
MAX_LIST_DELAY = 30.0  # between tries to read the jobs again on resuming
# Created before the pods, which mount them (Secret, ConfigMap) or join them (PodGroup).
_FIRST = ("Secret", "ConfigMap", "PodGroup")


def _resource_version(body: Mapping[str, Any]) -> int | None:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def _is_older(candidate: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether ``candidate`` is an older version of the same job than ``current``."""
    if candidate["metadata"].get("uid") != current["metadata"].get("uid"):
        return False
    new, old = _resource_version(candidate), _resource_version(current)
    return new is not None and old is not None and new < old


@dataclasses.dataclass
class _Expectations:
    """The operator's own writes that the watch has not shown yet, for one job."""

    created: dict[str, tuple[float, PodObservation]] = dataclasses.field(default_factory=dict)
    deleted: dict[str, float] = dataclasses.field(default_factory=dict)  # pod uid -> when
    service: float | None = None
    objects: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)  # created
    # (kind, name) whose create was refused as existing while the cache shows none of the
    # job's: held by an object the watch does not show (one without the job's label).
    conflicts: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)

    def empty(self) -> bool:
        return (
            not (self.created or self.deleted or self.service is not None or self.objects)
            and not self.conflicts
        )


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
        self.services: ChildCache[str | None] = {}
        # ConfigMaps of MPI jobs, by kind: (name, owner). (Secrets are never read: see decide.)
        self.mounted: dict[str, ChildCache[tuple[str, str | None]]] = {}
        self._synced: list[asyncio.Event] = []
        self._posting: set[asyncio.Task[None]] = set()  # events on their way
        # Events trickle out a few at a time: when a thousand jobs start, the pods' creates and
        # the status writes go first, and the Events that tell of them follow a moment later.
        self._event_slots = asyncio.Semaphore(EVENT_CONCURRENCY)
        self.jobs: dict[JobKey, dict[str, Any]] = {}
        self.queue = WorkQueue(self._work, max_concurrent=settings.max_concurrent_passes)
        self.job_states = metrics.JobStates()
        self._settled: dict[JobKey, int | None] = {}  # resourceVersion a pass finished with
        self._compiled: dict[JobKey, tuple[tuple[str, int | None], CompiledJob]] = {}
        self._expected: dict[JobKey, _Expectations] = {}
        self._failing: dict[JobKey, dt.datetime] = {}  # when its passes began to fail
        self._counts_since: dict[JobKey, float] = {}  # when unwritten count changes began
        self._denied: dict[JobKey, str] = {}  # the refusal already reported on a job
        # Scopes (a namespace, None: cluster-wide) whose passes wait for this replica's turn in
        # a peering of several replicas (see peering.py); caches stay warm meanwhile.
        self._paused: set[str | None] = set()
        # Pods that failed and were removed by someone else (the pod garbage collector, with
        # their lost node) before a pass saw them fail: kept until a pass has acted on them.
        self._lost: dict[JobKey, dict[str, PodObservation]] = {}
        self._resuming: dict[str | None, asyncio.Task[None]] = {}

    async def drain(self) -> None:
        """Wait for running passes and the events they post (tests and shutdown)."""
        await self.queue.drain()
        while self._posting:
            await asyncio.gather(*self._posting, return_exceptions=True)

    def watch_children(
        self,
        pods: ChildCache[PodObservation],
        services: ChildCache[str | None],
        mounted: dict[str, ChildCache[tuple[str, str | None]]] | None = None,
    ) -> None:
        """Read children from these caches (``mounted``: the ConfigMaps of MPI jobs, by kind);
        passes wait until each has listed once."""
        self.pods, self.services, self.mounted = pods, services, mounted or {}
        caches = (pods, services, *self.mounted.values())
        self._synced = [c.synced for c in caches if isinstance(c, Informer)]

    # ----- what the watches tell -------------------------------------------------------------
    def job_seen(self, body: dict[str, Any]) -> None:
        """A job was added or changed: keep it and ask for a pass unless nothing is new."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        current = self.jobs.get(key)
        if current is not None and _is_older(body, current):
            return  # the status write this operator made is newer
        self.jobs[key] = body
        if current is not None and current["metadata"].get("uid") != metadata.get("uid"):
            self._forget_state(key)  # the same name, a new job
        version = _resource_version(body)
        if version is not None and self._settled.get(key) == version:
            return  # the version a pass already finished with: its own write coming back
        self.queue.trigger(key)

    def job_gone(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.jobs.pop(key, None)
        self._forget_state(key)
        self.queue.forget(key)
        self.job_states.forget(key)

    def set_turn(self, scope: str | None, working: bool, why: str) -> None:
        """Pause or resume the passes over a scope's jobs (another replica works them
        meanwhile). What this replica remembers of its own writes is dropped on pausing; on
        resuming, the scope's jobs are read afresh (kopf's watch that fed them was paused too,
        and a pass over a stale job would undo the other replica's work), then each gets a
        pass."""
        where = f"in {scope}" if scope else "cluster-wide"
        resuming = self._resuming.pop(scope, None)
        if resuming is not None:
            resuming.cancel()
        if not working:
            self._paused.add(scope)
            for key in self._keys_in(scope):
                self._forget_state(key)
                self.queue.forget(key)
            log.info("passes paused %s: %s", where, why)
            return
        log.info("passes resume %s once its jobs are read again: %s", where, why)
        self._resuming[scope] = asyncio.get_running_loop().create_task(self._resume(scope))

    async def _resume(self, scope: str | None) -> None:
        delay = 1.0
        while True:
            try:
                jobs = await self._list_jobs(scope)
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - retried until it works or we pause
                log.warning("reading the jobs to resume failed (%s); again in %.0f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(MAX_LIST_DELAY, delay * 2)
        listed = {(job["metadata"]["namespace"], job["metadata"]["name"]) for job in jobs}
        for key in self._keys_in(scope):
            if key not in listed:
                self.job_gone(*key)
        for job in jobs:
            self.job_seen(job)
        self._paused.discard(scope)
        self._resuming.pop(scope, None)
        log.info(
            "passes resumed %s: %d jobs read", f"in {scope}" if scope else "cluster-wide", len(jobs)
        )
        for key in self._keys_in(scope):
            self.queue.trigger(key)

    async def _list_jobs(self, scope: str | None) -> list[dict[str, Any]]:
        where = f"/namespaces/{scope}" if scope else ""
        jobs: list[dict[str, Any]] = []
        token = ""
        while True:
            query = urllib.parse.urlencode(
                {"limit": "500", **({"continue": token} if token else {})}
            )
            page = await self.kube.list_page(
                f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}?{query}", resource=PLURAL, namespace=scope
            )
            jobs += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return jobs

    def _keys_in(self, scope: str | None) -> list[JobKey]:
        return [key for key in self.jobs if scope is None or key[0] == scope]

    def _may_work(self, key: JobKey) -> bool:
        return not self._paused or (None not in self._paused and key[0] not in self._paused)

    def pod_deleted(self, key: JobKey, pod: PodObservation, before: PodObservation | None) -> None:
        """A pod removed, with its last state and its state before its deletion began. One
        that had failed before anyone deleted it counts as a failure of its job (the pod
        garbage collector fails a lost node's pods, then force-deletes them, often before a pass
        saw them fail), unless the operator deleted it itself (seen in the next pass). One that
        ended Failed only while it was being deleted was killed by that deletion: no failure.
        While another replica has the turn, its deletes are its own business."""
        if (
            before is not None
            and before.phase == "Failed"
            and key in self.jobs
            and self._may_work(key)
        ):
            self._lost.setdefault(key, {})[pod.uid] = dataclasses.replace(pod, deleting=False)

    def children_changed(self, key: JobKey) -> None:
        if key in self.jobs:
            self.queue.trigger(key)

    def _forget_state(self, key: JobKey) -> None:
        self._settled.pop(key, None)
        self._compiled.pop(key, None)
        self._expected.pop(key, None)
        self._failing.pop(key, None)
        self._denied.pop(key, None)
        self._counts_since.pop(key, None)
        self._lost.pop(key, None)

    # ----- one pass ----------------------------------------------------------------------------
    def compiled(self, key: JobKey, job: dict[str, Any]) -> CompiledJob:
        """The job's compiled spec, parsed once per generation."""
        version = (job["metadata"]["uid"], job["metadata"].get("generation"))
        cached = self._compiled.get(key)
        if cached is None or cached[0] != version:
            cached = (version, compile_job(job.get("spec"), self.settings))
            self._compiled[key] = cached
        return cached[1]

    def observe(self, key: JobKey) -> Observed:
        """The cache's view of a job's children, with the operator's own unseen writes."""
        pods = list(self.pods.get(key, ()))
        service_owners = tuple(self.services.get(key, ()))
        objects = [
            (kind, name, owner)
            for kind, cache in self.mounted.items()
            for name, owner in cache.get(key, ())
        ]
        expected = self._expected.get(key)
        lost = self._lost.get(key)
        if lost:
            own = expected.deleted if expected is not None else {}
            live = {p.name for p in pods}
            for uid, pod in list(lost.items()):
                if uid in own or pod.name in live:
                    del lost[uid]  # the operator's own delete, or replaced already
            pods += lost.values()
        if expected is None:
            return Observed(tuple(pods), service_owners, tuple(objects))
        deadline = time.monotonic() - EXPECTATION_SECONDS
        seen = {p.name for p in pods}
        for name, (when, pod) in list(expected.created.items()):
            if name in seen or when < deadline:
                del expected.created[name]
            else:
                pods.append(pod)
        present = {p.uid: p for p in pods}
        for uid, when in list(expected.deleted.items()):
            pod = present.get(uid)
            # Kept while the pod is going, however long its grace period: its removal, even
            # of a pod that had failed, is the operator's own (see pod_deleted).
            if pod is None or (when < deadline and not pod.deleting):
                del expected.deleted[uid]
        pods = [
            dataclasses.replace(p, deleting=True) if p.uid in expected.deleted else p for p in pods
        ]
        job_uid = self.jobs[key]["metadata"]["uid"]
        if expected.service is not None:
            if job_uid in service_owners or expected.service < deadline:
                expected.service = None
            else:
                service_owners = (*service_owners, job_uid)
        owned = {(kind, name) for kind, name, owner in objects if owner == job_uid}
        for kind_name, when in list(expected.objects.items()):
            if kind_name in owned or when < deadline:
                del expected.objects[kind_name]
            else:
                objects.append((*kind_name, job_uid))
        # A name the API server said is taken, by nothing the watch shows: somebody else's.
        owned |= {("Pod", p.name) for p in pods if p.owner_uid == job_uid}
        if job_uid in service_owners:
            owned.add(("Service", key[1]))
        for (kind, name), when in list(expected.conflicts.items()):
            left = when + CONFLICT_RECHECK_SECONDS - time.monotonic()
            if (kind, name) in owned or left <= 0:
                del expected.conflicts[(kind, name)]
                continue
            self.queue.trigger_after(key, left)  # then a pass tries to create it again
            if kind == "Pod":
                pods.append(PodObservation(name, None, None, "Unknown", uid=f"conflict/{name}"))
            elif kind == "Service":
                service_owners = (*service_owners, None)
            else:
                objects.append((kind, name, None))
        if expected.empty():
            del self._expected[key]
        return Observed(tuple(pods), service_owners, tuple(objects))

    async def reconcile(self, key: JobKey) -> str | None:
        """One pass; returns the job's state afterwards (None: the job is gone or going)."""
        job = self.jobs.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        lost = set(self._lost.get(key) or ())  # acted on by this pass if it completes
        compiled = self.compiled(key, job)
        decision = decide(job, compiled, self.observe(key), self.settings, self.clock())
        if decision.status_first and decision.status is not None:
            # Restarts are on the status before their pods go.
            try:
                job = await self._write_status(key, job, decision)
            except Conflict:
                log.debug("%s/%s: status write raced a change; waiting for it", *key)
                return decision.state
            decision.status = None
        refused = await self._apply_children(key, job, decision)
        if refused is not None:
            decision = decide(
                job, compiled, self.observe(key), self.settings, self.clock(), refused=refused
            )
            await self._apply_children(key, job, decision)
        if decision.status is None:
            self._counts_since.pop(key, None)  # nothing waits to be written
        elif self._may_wait(key, decision):
            # The events tell of the changes this status records: both wait for the next pass,
            # which decides them again.
            decision.status, decision.events = None, []
        if decision.status is not None:
            try:
                job = await self._write_status(key, job, decision)
            except Conflict:
                # The job changed since the watch showed it: its newer version's event (come
                # or coming) runs the next pass.
                log.debug("%s/%s: status write raced a change; waiting for it", *key)
                return decision.state
        self._settled[key] = _resource_version(job)
        if lost:
            self._drop_lost(key, lost)
        for scope, count in decision.restarts.items():
            metrics.RESTARTS.labels(scope=scope).inc(count)
        if decision.events:
            # Posted after the status write that records them, without holding the pass's slot:
            # a slot is worth a round trip to the API server when a thousand jobs start.
            posting = asyncio.get_running_loop().create_task(
                self._post_events(job, decision.events)
            )
            self._posting.add(posting)
            posting.add_done_callback(self._posting.discard)
        if decision.delete_job:
            log.info("%s/%s: finished and past its ttlSecondsAfterFinished: deleting it", *key)
            await self.kube.delete_job(job)
        elif decision.look_again_after is not None:
            self.queue.trigger_after(key, decision.look_again_after)
        return decision.state

    async def _write_status(
        self, key: JobKey, job: dict[str, Any], decision: Decision
    ) -> dict[str, Any]:
        assert decision.status is not None
        self._counts_since.pop(key, None)
        stored = await self.kube.write_status(job, decision.status)
        if (job.get("status") or {}).get("state") != decision.state:
            log.info("%s/%s: %s", *key, decision.state)
        self.jobs[key] = stored
        return stored

    def _drop_lost(self, key: JobKey, uids: set[str]) -> None:
        remaining = self._lost.get(key)
        if remaining is not None:
            for uid in uids:
                remaining.pop(uid, None)
            if not remaining:
                del self._lost[key]

    def _may_wait(self, key: JobKey, decision: Decision) -> bool:
        """Whether a status write that only changes pod counts can wait, to take later count
        changes along: until the pods settle (none Pending or starting) and COUNTS_DELAY has
        passed, and never longer than COUNTS_MAX_DELAY. A job whose pods start one by one then
        costs one count write, not one per pod."""
        if decision.status_urgent:
            return False
        now = time.monotonic()
        waited = now - self._counts_since.setdefault(key, now)
        if waited >= COUNTS_MAX_DELAY or (decision.pods_settled and waited >= COUNTS_DELAY):
            return False
        due = COUNTS_DELAY if decision.pods_settled else COUNTS_MAX_DELAY
        self.queue.trigger_after(key, due - waited)
        return True

    async def _apply_children(
        self, key: JobKey, job: dict[str, Any], decision: Decision
    ) -> Problem | None:
        """Create (objects pods mount first, then the rest at once) and delete; a refused
        object is returned as the problem that fails the job."""
        ref = JobRef(key[1], key[0], job["metadata"]["uid"])
        first = [body for body in decision.create if body["kind"] in _FIRST]
        rest = [body for body in decision.create if body["kind"] not in _FIRST]
        if decision.create_ssh_secret:
            first.insert(0, mpi_ssh_secret(ref, *generate_ssh_keypair()))
        for body in first:
            refused = await self._create(key, body)
            if refused is not None:
                return refused
        expected = self._expected.get(key)
        if expected is not None and any(
            (body["kind"], body["metadata"]["name"]) in expected.conflicts for body in first
        ):
            return None  # the pods would mount another's Secret or ConfigMap: none for now
        outcomes = await asyncio.gather(*(self._create(key, body) for body in rest))
        await asyncio.gather(*(self._delete(key, pod) for pod in decision.delete))
        return next((problem for problem in outcomes if problem is not None), None)

    async def _create(self, key: JobKey, body: dict[str, Any]) -> Problem | None:
        kind, name = body["kind"], body["metadata"]["name"]
        try:
            stored = await self.kube.create(body)
        except Rejected as rejected:
            return Problem(
                "TFJobFailed" if kind == "Pod" else f"{kind}Rejected",
                f"TFJob {key[0]}/{key[1]} has failed: the API server refused "
                f"{kind.lower()} {name}: {rejected.message}",
            )
        expected = self._expected.setdefault(key, _Expectations())
        if stored is None and kind in ("Secret", "PodGroup"):
            pass  # an MPI job's key, an attempt's gang: their names carry the job's uid
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

    async def _delete(self, key: JobKey, pod: PodObservation) -> None:
        log.info("%s/%s: deleting pod %s", *key, pod.name)
        await self.kube.delete_pod(key[0], pod.name, pod.uid)
        self._expected.setdefault(key, _Expectations()).deleted[pod.uid] = time.monotonic()

    async def _post_events(self, job: dict[str, Any], events: list[JobEvent]) -> None:
        async with self._event_slots:
            outcomes = await asyncio.gather(
                *(self.kube.post_event(job, event) for event in events), return_exceptions=True
            )
        for event, outcome in zip(events, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.warning(
                    "could not post event %s for %s/%s: %s",
                    event.reason,
                    job["metadata"]["namespace"],
                    job["metadata"]["name"],
                    outcome,
                )

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
        self._denied.pop(key, None)
        self._failing.pop(key, None)
        if state is None:
            self.job_states.forget(key)
        else:
            self.job_states.set(key, state)

    async def _report_failure(self, key: JobKey, message: str) -> None:
        """Once passes over a job keep failing, say so on its status (best effort: the status
        write may be what fails)."""
        since = self._failing.setdefault(key, self.clock())
        attempts = self.queue.failures(key) + 1
        job = self.jobs.get(key)
        if job is None or attempts < RECONCILE_FAILURES_REPORTED:
            return
        failure = ReconcileFailure(message=message[:1024], attempts=attempts, since=since)
        status = {
            **(job.get("status") or {}),
            "reconcileFailure": failure.model_dump(by_alias=True, mode="json"),
        }
        try:
            self.jobs[key] = await self.kube.write_status(job, status)
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
        job = self.jobs.get(key)
        if self._denied.get(key) == what or refusal.resource == PLURAL or job is None:
            return  # told already, or the job itself cannot be read: the log says it
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
        self._denied[key] = what
