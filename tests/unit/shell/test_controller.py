"""The shell around decide: what it reads from the cache, what it remembers of its own writes,
and which events cause a pass. The API server's side is a recorder here; the same behaviour is
proven against the real control plane in tests/integration."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
from collections import defaultdict
from typing import Any

import pytest

from tfjob_operator.api.v1alpha1 import RECONCILE_FAILURES_REPORTED, ReplicaType
from tfjob_operator.core.events import JobEvent
from tfjob_operator.core.observed import PodObservation
from tfjob_operator.settings import OperatorSettings
from tfjob_operator.shell import kube
from tfjob_operator.shell.controller import Controller, kept, listed_job
from tfjob_operator.shell.handlers import jobs_path
from tfjob_operator.shell.listwatch import ListWatch

pytestmark = [pytest.mark.timeout(10), pytest.mark.asyncio]

KEY = ("ml", "mnist")
TEMPLATE = {"spec": {"containers": [{"name": "tensorflow", "image": "tf:2.21"}]}}


class RecordingKube:
    """Answers writes the way the API server does and records them."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []
        self.versions = itertools.count(200)
        self.fail_status_with: Exception | None = None
        self.fail_create_with: Exception | None = None
        self.stored_jobs: list[dict[str, Any]] = []  # what a LIST of jobs answers

    async def list_page(self, path: str, **_: Any) -> dict[str, Any]:
        self.writes.append(("list", path.split("?")[0]))
        return {"items": copy.deepcopy(self.stored_jobs), "metadata": {"resourceVersion": "1"}}

    async def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.writes.append(("create", body["metadata"]["name"]))
        if self.fail_create_with is not None:
            raise self.fail_create_with
        stored = copy.deepcopy(body)
        stored["metadata"]["uid"] = f"uid-{body['metadata']['name']}"
        return stored

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        self.writes.append(("delete", name))

    async def write_status(self, job: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("status", status.get("state") or ""))
        if self.fail_status_with is not None and "reconcileFailure" not in status:
            raise self.fail_status_with
        stored = copy.deepcopy({**job, "status": status})
        stored["metadata"]["resourceVersion"] = str(next(self.versions))
        return stored

    async def post_event(self, job: dict[str, Any], event: JobEvent) -> None:
        self.writes.append(("event", event.reason))


def job_body(replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {
            "name": "mnist",
            "namespace": "ml",
            "uid": "job-uid",
            "generation": 1,
            "resourceVersion": "100",
        },
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": replicas, "template": TEMPLATE}}},
    }


def controller() -> tuple[Controller, RecordingKube, dict, dict]:
    recorder = RecordingKube()
    pods: dict[tuple[str, str], list[PodObservation]] = defaultdict(list)
    services: dict[tuple[str, str], list[tuple[str, str | None]]] = defaultdict(list)
    ctl = Controller(recorder, OperatorSettings())  # type: ignore[arg-type]
    ctl.watch_children(pods, services)
    jobs = ListWatch(
        recorder,  # type: ignore[arg-type]
        "tensorflowjobs",
        jobs_path,
        [None],
        on_list=ctl.jobs_listed,
        on_event=ctl.job_event,
        keep=listed_job,
    )
    ctl.watch_jobs(jobs)
    return ctl, recorder, pods, services


async def test_a_jobs_own_status_write_coming_back_causes_no_pass() -> None:
    ctl, recorder, _, _ = controller()
    ctl.job_seen(job_body())
    await ctl.drain()
    assert recorder.writes[:3] == [
        ("create", "mnist"),
        ("create", "mnist-worker-0"),
        ("create", "mnist-worker-1"),
    ]
    assert ("status", "Created") in recorder.writes
    written = ctl.jobs[KEY].body
    recorder.writes.clear()
    ctl.job_seen(copy.deepcopy(written))  # the watch shows the operator's own write
    await ctl.drain()
    assert recorder.writes == []
    changed = copy.deepcopy(written)
    changed["metadata"]["resourceVersion"] = "999"
    changed["metadata"]["labels"] = {"team": "vision"}
    ctl.job_seen(changed)  # somebody else changed the job: a pass, which finds nothing to do
    await ctl.drain()
    assert recorder.writes == []


async def test_an_older_version_from_the_watch_does_not_replace_the_written_one() -> None:
    ctl, _, _, _ = controller()
    original = job_body()
    ctl.job_seen(original)
    await ctl.drain()
    ctl.job_seen(original)  # resourceVersion 100, older than the status write's answer
    assert ctl.jobs[KEY].body["metadata"]["resourceVersion"] != "100"


async def test_pods_just_created_are_not_created_again_before_the_watch_shows_them() -> None:
    ctl, recorder, pods, services = controller()
    ctl.job_seen(job_body())
    await ctl.drain()
    recorder.writes.clear()
    ctl.children_changed(KEY)  # e.g. the Service's event: the pods' are not in the cache yet
    await ctl.drain()
    assert [w for w in recorder.writes if w[0] == "create"] == []
    # Once the watch shows them, the cache speaks for itself.
    for name in ("mnist-worker-0", "mnist-worker-1"):
        pods[KEY].append(
            PodObservation(name=name, replica_type=None, index=None, phase="Running", uid=name)
        )
    services[KEY].append(("mnist", "job-uid"))
    assert [p.name for p in ctl.observe(KEY).pods] == ["mnist-worker-0", "mnist-worker-1"]
    assert ctl.jobs[KEY].expected.empty()


async def test_a_labelled_service_of_another_name_does_not_stand_in_for_the_jobs_own() -> None:
    """A TensorBoard Service labelled with the job's name once kept the job's headless Service
    from ever being made (and was reported as holding its name)."""
    ctl, recorder, _, services = controller()
    services[KEY].append(("mnist-tb", None))
    ctl.job_seen(job_body())
    await ctl.drain()
    assert ("create", "mnist") in recorder.writes
    assert not (ctl.jobs[KEY].body.get("status") or {}).get("waiting")


async def test_a_pass_that_keeps_failing_says_so_on_the_status_once_and_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tfjob_operator.shell import workqueue

    monkeypatch.setattr(workqueue, "MIN_RETRY_DELAY", 0.01)
    ctl, recorder, _, _ = controller()
    recorder.fail_status_with = kube.ApiError(500, "etcdserver: request timed out")
    ctl.job_seen(job_body())
    while ctl.queue.failures(KEY) < RECONCILE_FAILURES_REPORTED + 1:
        await asyncio.sleep(0.01)
    events = [w for w in recorder.writes if w[0] == "event"]
    assert events.count(("event", "ReconcileFailing")) == 1
    failure = ctl.jobs[KEY].body["status"]["reconcileFailure"]
    assert failure["attempts"] >= RECONCILE_FAILURES_REPORTED
    assert failure["message"] == "ApiError: 500: etcdserver: request timed out"
    recorder.fail_status_with = None
    while ctl.queue.failures(KEY):
        await asyncio.sleep(0.01)
    await ctl.drain()
    assert "reconcileFailure" not in ctl.jobs[KEY].body["status"]
    ctl.job_gone(*KEY)


async def test_a_name_taken_by_an_unwatched_object_is_reported_not_created_in_a_loop() -> None:
    """The API server says a pod's name is taken, and the watch (by label) shows no pod of that
    name: somebody else's. The job says so, and no pass tries again for a while."""
    ctl, recorder, _, _ = controller()
    taken = "mnist-worker-1"
    original = recorder.create

    async def create(body: dict[str, Any]) -> dict[str, Any] | None:
        if body["metadata"]["name"] == taken:
            recorder.writes.append(("create", taken))
            return None  # 409 AlreadyExists
        return await original(body)

    recorder.create = create  # type: ignore[method-assign]
    ctl.job_seen(job_body())
    await ctl.drain()
    assert recorder.writes.count(("create", taken)) == 1
    ctl.queue.trigger(KEY)  # more passes within the recheck time
    await ctl.drain()
    ctl.queue.trigger(KEY)
    await ctl.drain()
    assert recorder.writes.count(("create", taken)) == 1
    waiting = ctl.jobs[KEY].body["status"]["waiting"]
    assert [(w["pod"], w["reason"]) for w in waiting] == [(taken, "NameInUse")]


async def test_a_paused_replica_runs_no_pass_and_resuming_passes_every_job_read_afresh() -> None:
    """Another replica works while this one is paused: its caches take events, but its passes
    write nothing; when its turn comes it reads the jobs again and passes each."""
    ctl, recorder, _, _ = controller()
    ctl.set_turn(None, False, "a live peer has a higher priority")
    ctl.job_seen(job_body())
    ctl.children_changed(KEY)
    await ctl.drain()
    assert recorder.writes == []
    recorder.stored_jobs = [job_body()]
    ctl.set_turn(None, True, "the peer is gone")
    await asyncio.sleep(0)  # the resume's LIST
    await ctl.drain()
    assert recorder.writes[0] == ("list", "/apis/tfjob.dev/v1alpha1/tensorflowjobs")
    assert ("create", "mnist-worker-0") in recorder.writes


async def test_resuming_acts_on_the_jobs_as_they_are_now_not_as_last_seen() -> None:
    """While paused, the other replica finished one job (its pods cleaned) and a second was
    deleted: the stale copies this replica still holds must not bring their pods back."""
    ctl, recorder, _, _ = controller()
    ctl.set_turn(None, False, "a live peer has a higher priority")
    ctl.job_seen(job_body())
    gone = job_body()
    gone["metadata"] = {**gone["metadata"], "name": "deleted", "uid": "deleted-uid"}
    ctl.job_seen(gone)
    finished = job_body()
    finished["metadata"]["resourceVersion"] = "150"
    finished["status"] = {
        "state": "Succeeded",
        "conditions": [
            {"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded", "message": "done"}
        ],
    }
    recorder.stored_jobs = [finished]
    ctl.set_turn(None, True, "the peer is gone")
    await asyncio.sleep(0)
    await ctl.drain()
    assert [w for w in recorder.writes if w[0] == "create"] == []
    assert set(ctl.jobs) == {KEY}
    assert ctl.jobs[KEY].body["status"]["state"] == "Succeeded"


async def test_a_paused_namespace_leaves_the_others_working() -> None:
    ctl, recorder, _, _ = controller()
    ctl.set_turn("ml", False, "a live peer in ml's peering")
    other = job_body()
    other["metadata"] = {**other["metadata"], "namespace": "vision", "uid": "other"}
    ctl.job_seen(job_body())
    ctl.job_seen(other)
    await ctl.drain()
    assert ("create", "mnist-worker-0") in recorder.writes
    assert len([w for w in recorder.writes if w == ("create", "mnist-worker-0")]) == 1


def lost_pod(index: int, uid: str, *, deleting: bool = False) -> PodObservation:
    return PodObservation(
        name=f"mnist-worker-{index}",
        replica_type=ReplicaType.WORKER,
        index=index,
        phase="Failed",
        uid=uid,
        owner_uid="job-uid",
        deleting=deleting,
        reason="DeletionByPodGC",
        message="PodGC: node no longer exists",
    )


async def two_running_workers(
    body: dict[str, Any] | None = None,
) -> tuple[Controller, RecordingKube, dict, list[PodObservation]]:
    """A job passed over with its Service and both workers Running in the cache."""
    ctl, recorder, pods, services = controller()
    ctl.job_seen(body or job_body())
    await ctl.drain()
    running = [dataclasses.replace(lost_pod(i, f"uid-{i}"), phase="Running") for i in (0, 1)]
    pods[KEY][:] = running
    services[KEY].append(("mnist", "job-uid"))
    ctl.children_changed(KEY)
    await ctl.drain()
    return ctl, recorder, pods, running


async def test_pods_failed_and_removed_with_a_lost_node_count_once_as_one_failure() -> None:
    """The pod garbage collector fails and force-deletes a lost node's pods in one go, often
    before a pass sees them Failed: their last state still counts, once, and the operator's own
    deletes of them later count nothing."""
    body = job_body()
    body["spec"]["tfReplicaSpecs"]["Worker"]["restartPolicy"] = "ExitCode"
    ctl, recorder, pods, _ = await two_running_workers(body)
    recorder.writes.clear()
    # Both failed, then force-deleted, one after the other, as the watch tells it: Failed
    # before their deletion began.
    pods[KEY][:] = []
    ctl.pod_deleted(KEY, lost_pod(0, "uid-0", deleting=True), lost_pod(0, "uid-0"))
    ctl.pod_deleted(KEY, lost_pod(1, "uid-1", deleting=True), lost_pod(1, "uid-1"))
    ctl.children_changed(KEY)
    await ctl.drain()
    assert ctl.jobs[KEY].body["status"]["attempt"] == 2
    assert ("status", "Restarting") in recorder.writes
    # Nothing is left to count again, whatever comes next.
    ctl.children_changed(KEY)
    await ctl.drain()
    assert ctl.jobs[KEY].body["status"]["attempt"] == 2


async def test_a_running_pod_someone_else_deleted_restarts_the_collective_once() -> None:
    """Deleted by a person (or force-deleted, or gone while the watch re-listed) before any
    pass saw it going: a disruption. The collective restarts as its next attempt, never with
    the member made again into the attempt it left, and backoffLimit is not spent."""
    ctl, recorder, pods, _ = await two_running_workers()
    recorder.writes.clear()
    running = dataclasses.replace(lost_pod(0, "uid-0"), phase="Running")
    pods[KEY][:] = pods[KEY][1:]
    ctl.pod_deleted(KEY, dataclasses.replace(running, deleting=True), running)
    ctl.children_changed(KEY)
    await ctl.drain()
    status = ctl.jobs[KEY].body["status"]
    assert status["attempt"] == 2
    assert status["replicaStatuses"]["Worker"]["disruptions"] == 1
    assert "restarts" not in status["replicaStatuses"]["Worker"]
    assert ("create", "mnist-worker-0") not in recorder.writes
    assert ("delete", "mnist-worker-1") in recorder.writes
    # Seen again (another event, a re-list): counted once.
    ctl.children_changed(KEY)
    await ctl.drain()
    assert ctl.jobs[KEY].body["status"]["replicaStatuses"]["Worker"]["disruptions"] == 1


async def test_a_succeeded_worker_removed_by_the_pod_gc_is_recorded_at_once_and_kept() -> None:
    """Found at 5,000 jobs: the pod garbage collector removes ended pods past its threshold,
    a succeeded worker of a running collective among them. Its success goes on the status at
    once (a count change that would otherwise wait), and no pass after restarts the job."""
    ctl, recorder, pods, running = await two_running_workers()
    succeeded = dataclasses.replace(running[1], phase="Succeeded", reason=None, message=None)
    pods[KEY][:] = [running[0], succeeded]
    ctl.children_changed(KEY)
    await ctl.drain()  # a count change: it waits
    recorder.writes.clear()
    pods[KEY][:] = [running[0]]
    ctl.pod_deleted(KEY, succeeded, succeeded)  # force-deleted, grace 0, as the GC does
    ctl.children_changed(KEY)
    await ctl.drain()
    assert [verb for verb, _ in recorder.writes] == ["status"]
    status = ctl.jobs[KEY].body["status"]
    assert status["replicaStatuses"]["Worker"]["completedIndexes"] == "1"
    assert (status.get("attempt") or 1) == 1
    recorder.writes.clear()
    ctl.children_changed(KEY)  # and later passes, without the pod, change nothing
    await ctl.drain()
    assert recorder.writes == []
    assert (ctl.jobs[KEY].body["status"].get("attempt") or 1) == 1


async def test_the_operators_own_delete_of_a_failed_pod_is_not_a_second_failure() -> None:
    """A retried failure replaces the failed pod (restartScope Pod): the operator deletes it.
    It was Failed before its deletion began, but the deletion was the operator's own, however
    long its grace period kept it going. The restart counts once."""
    ctl, recorder, pods, services = controller()
    body = job_body()
    body["spec"]["tfReplicaSpecs"]["Worker"]["restartPolicy"] = "ExitCode"
    body["spec"]["runPolicy"] = {"restartScope": "Pod"}
    ctl.job_seen(body)
    await ctl.drain()
    running = dataclasses.replace(lost_pod(1, "uid-1"), phase="Running")
    failed = dataclasses.replace(lost_pod(0, "uid-0"), exit_code=137, reason="Error")
    pods[KEY][:] = [failed, running]
    services[KEY].append(("mnist", "job-uid"))
    ctl.children_changed(KEY)
    await ctl.drain()
    assert ("delete", "mnist-worker-0") in recorder.writes

    def restarts() -> int:
        return ctl.jobs[KEY].body["status"]["replicaStatuses"]["Worker"].get("restarts")

    assert restarts() == 1
    # The deletion begins; passes see the pod going for a while (the operator's memory of its
    # delete outlives the sight of it going), then the watch says it is gone.
    pods[KEY][:] = [dataclasses.replace(failed, deleting=True), running]
    ctl.children_changed(KEY)
    await ctl.drain()
    recorder.writes.clear()
    pods[KEY][:] = [running]
    ctl.pod_deleted(KEY, dataclasses.replace(failed, deleting=True), failed)
    ctl.children_changed(KEY)
    await ctl.drain()
    assert ("create", "mnist-worker-0") in recorder.writes
    assert restarts() == 1
    assert ctl.jobs[KEY].body["status"]["state"] != "Failed"


async def test_a_job_created_again_under_its_name_starts_with_nothing_of_the_old_one() -> None:
    """The record is the job's, by uid: the new job's first pass creates its pods although
    the old job's creates are still expected (the watch never showed them)."""
    ctl, recorder, _, _ = controller()
    ctl.job_seen(job_body())
    await ctl.drain()
    assert not ctl.jobs[KEY].expected.empty()
    recorder.writes.clear()
    again = job_body()
    again["metadata"] |= {"uid": "job-uid-2", "resourceVersion": "300"}
    ctl.job_seen(again)
    await ctl.drain()
    assert ctl.jobs[KEY].uid == "job-uid-2"
    assert [w for w in recorder.writes if w[0] == "create"] == [
        ("create", "mnist"),
        ("create", "mnist-worker-0"),
        ("create", "mnist-worker-1"),
    ]


async def test_a_job_a_fresh_list_lacks_is_forgotten_and_its_pods_never_made_again() -> None:
    """Deleted while the job watch was down (it lists again after 410 Gone): the list is the
    only news of it, and nothing of the job may outlive it."""
    ctl, recorder, _, _ = controller()
    ctl.job_seen(job_body())
    await ctl.drain()
    recorder.writes.clear()
    ctl.jobs_listed(None, [])
    assert KEY not in ctl.jobs
    ctl.children_changed(KEY)  # its pods going, by garbage collection
    await ctl.drain()
    assert recorder.writes == []


async def test_a_deleted_event_of_the_old_uid_leaves_the_new_job_alone() -> None:
    ctl, _, _, _ = controller()
    again = job_body()
    again["metadata"] |= {"uid": "job-uid-2"}
    ctl.job_event("ADDED", again)
    ctl.job_event("DELETED", job_body())
    assert ctl.jobs[KEY].uid == "job-uid-2"
    ctl.job_event("DELETED", again)
    assert KEY not in ctl.jobs
    await ctl.drain()


async def test_a_404_on_the_status_write_means_the_job_is_gone_and_nothing_comes_back() -> None:
    """Deleted before its watch said so: the write that finds it gone forgets it, and no
    later trigger (its pods going, a timer) makes anything for it again."""
    ctl, recorder, _, _ = controller()
    recorder.fail_status_with = kube.NotFound(404, 'tensorflowjobs "mnist" not found')
    ctl.job_seen(job_body())
    await ctl.drain()
    assert KEY not in ctl.jobs
    assert ctl.queue.failures(KEY) == 0  # not a failing pass to retry with backoff
    recorder.writes.clear()
    ctl.children_changed(KEY)
    await ctl.drain()
    assert recorder.writes == []


async def test_a_404_for_an_old_job_leaves_the_new_one_of_the_same_name() -> None:
    ctl, _, _, _ = controller()
    ctl.job_seen(job_body())
    await ctl.drain()
    old = ctl.jobs[KEY]
    again = job_body()
    again["metadata"] |= {"uid": "job-uid-2", "resourceVersion": "300"}
    ctl.job_seen(again)
    ctl._vanished(KEY, old)  # the old job's late 404
    assert ctl.jobs[KEY].uid == "job-uid-2"
    await ctl.drain()


async def test_a_new_job_under_an_old_name_does_not_inherit_its_backoff() -> None:
    ctl, recorder, _, _ = controller()
    recorder.fail_status_with = kube.ApiError(500, "etcd is slow")
    ctl.job_seen(job_body())
    await ctl.drain()
    assert ctl.queue.failures(KEY) >= 1
    recorder.fail_status_with = None
    again = job_body()
    again["metadata"] |= {"uid": "job-uid-2", "resourceVersion": "300"}
    ctl.job_seen(again)
    assert ctl.queue.failures(KEY) == 0
    await ctl.drain()


async def test_a_create_answered_not_found_means_the_jobs_namespace_and_job_are_gone() -> None:
    """Its namespace was deleted while the job watch had not said so: the job is forgotten,
    not retried with backoff, and nothing is created for it again."""
    ctl, recorder, _, _ = controller()
    recorder.fail_create_with = kube.NotFound(404, 'namespaces "ml" not found')
    ctl.job_seen(job_body())
    await ctl.drain()
    assert KEY not in ctl.jobs
    assert ctl.queue.failures(KEY) == 0
    creates = [w for w in recorder.writes if w[0] == "create"]
    ctl.children_changed(KEY)
    await ctl.drain()
    assert [w for w in recorder.writes if w[0] == "create"] == creates


async def test_a_create_answered_not_found_for_another_reason_is_retried_not_forgotten() -> None:
    """A 404 for an API the cluster stopped serving is an error of the pass, not the job's end."""
    ctl, recorder, _, _ = controller()
    recorder.fail_create_with = kube.NotFound(404, "the server could not find the resource")
    ctl.job_seen(job_body())
    with contextlib.suppress(Exception):
        await ctl.drain()
    assert KEY in ctl.jobs
    assert ctl.queue.failures(KEY) >= 1


async def test_a_cached_job_keeps_nothing_no_pass_reads() -> None:
    """managedFields and client-side apply's copy of the manifest are as large as the job."""
    body = {
        "metadata": {
            "name": "a",
            "uid": "u",
            "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "labels": {"kueue.x-k8s.io/queue-name": "q"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {}}',
                "team": "vision",
            },
        },
        "spec": {"entryScript": "train.py"},
    }
    trimmed = kept(copy.deepcopy(body))
    assert trimmed["metadata"] == {
        "name": "a",
        "uid": "u",
        "resourceVersion": "7",
        "labels": {"kueue.x-k8s.io/queue-name": "q"},
        "annotations": {"team": "vision"},
    }
    assert trimmed["spec"] == body["spec"]
    plain = {"metadata": {"name": "a"}, "spec": {}}
    assert kept(plain) is plain  # nothing to drop: no copy


def _succeeded_pods(pods: dict, services: dict) -> None:
    pods[KEY][:] = [
        dataclasses.replace(lost_pod(i, f"uid-{i}"), phase="Succeeded", exit_code=0, reason=None)
        for i in (0, 1)
    ]
    services[KEY].append(("mnist", "job-uid"))


async def test_a_finished_job_is_kept_frozen_until_something_reads_it() -> None:
    """Ten thousand finished jobs must cost little: once a pass leaves a job finished with
    nothing to do, its body is kept as JSON and its compiled spec dropped; the next pass
    thaws it, and decides as before."""
    ctl, recorder, pods, services = controller()
    ctl.job_seen(job_body())
    await ctl.drain()
    assert not ctl.jobs[KEY].frozen  # running: read on every pass
    assert ctl.jobs[KEY].compiled is not None
    _succeeded_pods(pods, services)
    ctl.children_changed(KEY)
    await ctl.drain()
    state = ctl.jobs[KEY]
    assert state.frozen
    assert state.compiled is None
    written = copy.deepcopy(state.body)  # reading it thaws it
    assert written["status"]["state"] == "Succeeded"
    state.freeze()
    # Its own status write coming back through the watch neither thaws it nor asks for a pass.
    recorder.writes.clear()
    ctl.job_seen(copy.deepcopy(written))
    await ctl.drain()
    assert state.frozen
    assert recorder.writes == []
    # A pass over it (a pod deleted, say) reads it, finds nothing to write, and freezes it again.
    ctl.children_changed(KEY)
    await ctl.drain()
    assert recorder.writes == []
    assert state.frozen
    assert state.body == written


async def test_an_operator_starting_among_finished_jobs_passes_over_a_new_job_first() -> None:
    ctl, _, _, _ = controller()
    ctl.queue = type(ctl.queue)(ctl._work, max_concurrent=1)
    passes: list[str] = []
    reconcile = ctl.reconcile

    async def recorded(key: tuple[str, str]) -> str | None:
        passes.append(key[1])
        await asyncio.sleep(0)  # a pass waits for the API server: the others queue meanwhile
        return await reconcile(key)

    ctl.reconcile = recorded  # type: ignore[method-assign]
    done = []
    for index in range(3):
        finished = job_body()
        finished["metadata"] |= {"name": f"old-{index}", "uid": f"old-{index}"}
        finished["status"] = {
            "state": "Succeeded",
            "conditions": [
                {"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded", "message": "ok"}
            ],
        }
        done.append(finished)
    ctl.jobs_listed(None, done)
    ctl.job_seen(job_body())  # created right after the operator started
    await ctl.drain()
    # The first finished job took the one free slot; the new job's pass goes before the rest.
    assert passes == ["old-0", "mnist", "old-1", "old-2"]


async def test_finished_jobs_listed_on_starting_are_frozen_before_their_first_pass() -> None:
    """An operator starting among ten thousand finished jobs never holds them all as dicts:
    each is frozen as its page of the list comes, thawed only for its own pass."""
    ctl, recorder, pods, services = controller()
    _succeeded_pods(pods, services)
    finished = job_body()
    finished["status"] = {
        "state": "Succeeded",
        "conditions": [
            {"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded", "message": "ok"}
        ],
    }
    recorder.stored_jobs = [finished]
    listed, _ = await ctl.job_watch.list_all(None)  # type: ignore[union-attr]
    ctl.jobs_listed(None, listed)
    state = ctl.jobs[KEY]
    assert state.frozen
    assert state.finished
    await ctl.drain()
    assert ctl.jobs[KEY] is state
    assert state.frozen  # passed, and frozen again
    assert [w for w in recorder.writes if w[0] in ("create", "delete")] == []
    # Listed again unchanged (a watch's 410, say): the same record, still frozen, no pass.
    recorder.writes.clear()
    recorder.stored_jobs = [state.body]
    state.freeze()
    ctl.jobs_listed(None, (await ctl.job_watch.list_all(None))[0])  # type: ignore[union-attr]
    await ctl.drain()
    assert ctl.jobs[KEY] is state
    assert state.frozen
    assert [w for w in recorder.writes if w[0] != "list"] == []


async def test_the_watch_showing_what_a_pass_created_is_foreseen_and_a_change_is_not() -> None:
    """Each pod and the Service a pass creates come back as the watch's first sight of them:
    that pass counted them, so they ask for no pass; anything else about them does."""
    ctl, recorder, _, _ = controller()
    ctl.job_seen(job_body())
    await ctl.drain()
    created = [name for verb, name in recorder.writes if verb == "create"]
    assert created == ["mnist", "mnist-worker-0", "mnist-worker-1"]
    answered = ctl.jobs[KEY].expected.created["mnist-worker-0"][1]  # what the create answered
    assert ctl.pod_foreseen(KEY, answered)
    assert ctl.service_foreseen(KEY, ("mnist", "job-uid"))
    running = dataclasses.replace(answered, phase="Running", ready=True)
    assert not ctl.pod_foreseen(KEY, running)  # already changed: news
    assert not ctl.service_foreseen(KEY, ("mnist", "another-uid"))  # somebody else's
    assert not ctl.pod_foreseen(("ml", "other"), answered)  # no such job
    ctl.jobs[KEY].expected.created.clear()  # a pass saw them: a pod of that name again is news
    assert not ctl.pod_foreseen(KEY, answered)
