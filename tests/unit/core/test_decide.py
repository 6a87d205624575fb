"""One pass decided purely: what to create and delete, the status to write and the events, from
the job, the cached children and the time. No cluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from tests.support.factories import (
    NOW,
    SETTINGS,
    TEMPLATE,
    UID,
    conditions,
    job,
    kubeflow_spec,
    names,
    pod,
    run,
    settle,
)
from tfjob_operator.core import builders, retries
from tfjob_operator.core.compile import compile_job
from tfjob_operator.core.decide import Decision, decide
from tfjob_operator.core.observed import Observed, PodObservation, Problem
from tfjob_operator.settings import OperatorSettings

pytestmark = pytest.mark.timeout(20)


# ----- creating ---------------------------------------------------------------------------
def test_a_new_job_gets_its_service_and_every_pod_and_is_created() -> None:
    decision = run(job(kubeflow_spec(Chief=1, Worker=2, PS=1)), service=False)
    assert names(decision.create) == [
        ("Service", "mnist"),
        ("Pod", "mnist-chief-0"),
        ("Pod", "mnist-worker-0"),
        ("Pod", "mnist-worker-1"),
        ("Pod", "mnist-ps-0"),
    ]
    assert decision.delete == []
    assert conditions(decision) == {"Created": ("True", "TFJobCreated")}
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "TFJobCreated")]
    assert decision.state == "Created"
    assert decision.status["observedGeneration"] == 1


def test_only_missing_pods_are_created() -> None:
    """Before the attempt runs (a create failed, say): a collective's member that was never
    there is made. (Once it runs, a member that goes restarts the whole job: test_retries.)"""
    first = run(job(kubeflow_spec(Worker=3)), service=False)
    body = settle(job(kubeflow_spec(Worker=3)), first)
    decision = run(body, [pod("worker", 0, "Pending"), pod("worker", 2, "Pending")])
    assert names(decision.create) == [("Pod", "mnist-worker-1")]


def test_a_pass_over_a_settled_job_writes_and_creates_nothing() -> None:
    """Idempotent: with its pods and status in place, a pass decides to do nothing at all."""
    body = job(kubeflow_spec(Worker=2))
    pods = [pod("worker", 0), pod("worker", 1)]
    once = run(body, pods)
    assert once.status is not None  # Running is new
    twice = run(settle(body, once), pods)
    assert twice == Decision(state="Running", pods_settled=False)  # running, not yet ready


def test_a_large_job_whose_pods_exist_builds_no_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1,000-worker job's TF_CONFIG is ~86 KB per pod: a pass builds only what is missing."""
    spec = kubeflow_spec(Worker=1000)
    spec["runPolicy"] = {"restartScope": "Pod"}  # a worker that goes is replaced alone
    body = job(spec)
    pods = [pod("worker", i) for i in range(1000)]
    settled = settle(body, run(body, pods))
    built: list[str] = []
    real_build_pod = builders.build_pod

    def counting_build_pod(*args: Any, **kwargs: Any) -> dict[str, Any]:
        built.append(args[1])
        return real_build_pod(*args, **kwargs)

    monkeypatch.setattr(builders, "build_pod", counting_build_pod)
    assert run(settled, pods) == Decision(state="Running", pods_settled=False)
    assert built == []
    decision = run(settled, [p for p in pods if p.index != 500])
    assert names(decision.create) == [("Pod", "mnist-worker-500")]
    assert len(built) == 1


def test_pods_of_another_job_with_the_same_name_are_not_ours() -> None:
    """A pod left by a deleted job of the same name is neither counted, nor deleted, nor
    created over (that would be refused again and again): the status says it is in the way."""
    stranger = pod("worker", 0, "Failed", owner="uid-of-an-older-job", exit_code=1, deleting=True)
    decision = run(job(kubeflow_spec(Worker=2)), [stranger])
    assert names(decision.create) == [("Pod", "mnist-worker-1")]
    assert decision.delete == []
    assert "Failed" not in conditions(decision)
    (waiting,) = decision.status["waiting"]
    assert waiting["pod"] == "mnist-worker-0"
    assert waiting["reason"] == "NameInUse"
    assert "not this job's (still terminating)" in waiting["message"]
    # Once it is gone, the job creates its own.
    assert names(run(job(kubeflow_spec(Worker=2)), []).create) == [
        ("Pod", "mnist-worker-0"),
        ("Pod", "mnist-worker-1"),
    ]


def test_a_service_of_the_same_name_that_is_not_ours_is_reported_not_created() -> None:
    body = job(kubeflow_spec(Worker=1))
    observed = Observed((), ("uid-of-somebody-else",))
    decision = decide(body, compile_job(body["spec"], SETTINGS), observed, SETTINGS, NOW)
    assert names(decision.create) == [("Pod", "mnist-worker-0")]
    (waiting,) = decision.status["waiting"]
    assert (waiting["pod"], waiting["reason"]) == ("mnist", "NameInUse")
    assert "a Service named mnist exists that is not this job's" in waiting["message"]


def test_a_pod_nobody_wants_any_more_is_deleted() -> None:
    extra = pod("worker", 2)
    decision = run(job(kubeflow_spec(Worker=2)), [pod("worker", 0), pod("worker", 1), extra])
    assert decision.create == []
    assert decision.delete == [extra]
    going = dataclasses.replace(extra, deleting=True)
    assert run(job(kubeflow_spec(Worker=2)), [going]).delete == []


# ----- finishing --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("clean", "deleted"),
    [
        ("Running", ["mnist-worker-1", "mnist-ps-0"]),
        ("All", ["mnist-worker-0", "mnist-worker-1", "mnist-ps-0"]),
        ("None", []),
    ],
)
def test_success_of_worker_0_finishes_the_job_and_cleans_pods_by_policy(
    clean: str, deleted: list[str]
) -> None:
    body = job(kubeflow_spec(clean, Worker=2, PS=1))
    pods = [pod("worker", 0, "Succeeded"), pod("worker", 1), pod("ps", 0)]
    decision = run(body, pods)
    assert conditions(decision)["Succeeded"] == ("True", "TFJobSucceeded")
    assert decision.state == "Succeeded"
    assert [p.name for p in decision.delete] == deleted
    assert ("Normal", "TFJobSucceeded") in [(e.type, e.reason) for e in decision.events]


def test_a_finished_jobs_status_is_written_before_its_pods_are_cleaned() -> None:
    """Found by killing the operator at random moments (tests/integration/test_faults.py): a
    kill between cleaning a succeeded job's pods and writing its status left a job that looked
    unfinished with a worker missing, and the next operator made that worker again."""
    body = settle(
        job(kubeflow_spec(Worker=2)), run(job(kubeflow_spec(Worker=2)), [pod("worker", 0)])
    )
    ending = run(body, [pod("worker", 0, "Succeeded"), pod("worker", 1)])
    assert [p.name for p in ending.delete] == ["mnist-worker-1"]
    assert ending.status_first
    assert conditions(ending)["Succeeded"] == ("True", "TFJobSucceeded")
    # Once it is written, the cleanup alone (a retry) needs no status first.
    done = settle(body, ending)
    again = run(done, [pod("worker", 0, "Succeeded"), pod("worker", 1)])
    assert [p.name for p in again.delete] == ["mnist-worker-1"]
    assert not again.status_first
    assert again.create == []


def test_a_restart_written_before_its_old_pods_went_is_not_counted_again() -> None:
    """Found by killing the operator 10 times over 100 jobs: a kill after a restart's status
    (attempt 2) was written but before the attempt-1 pods were deleted left those pods, one of
    them Failed; the next operator counted that failure again and went on to attempt 3."""
    spec = kubeflow_spec(Worker=2)
    for replica in spec["tfReplicaSpecs"].values():
        replica["restartPolicy"] = "ExitCode"
    body = job(spec)
    running = settle(body, run(body, [pod("worker", 0), pod("worker", 1)]))
    old = [pod("worker", 0, "Failed", exit_code=137), pod("worker", 1)]
    restarting = run(running, old)
    assert restarting.status_first
    assert restarting.status["attempt"] == 2
    written = settle(running, restarting)
    # The operator died here; the next one sees the attempt-1 pods, none of them deleting.
    again = run(written, old)
    assert sorted(p.name for p in again.delete) == ["mnist-worker-0", "mnist-worker-1"]
    assert again.status is None or again.status["attempt"] == 2
    assert again.create == []


@pytest.mark.parametrize("spec", [{"Worker": 3}, {"Chief": 1, "Worker": 2, "PS": 1}])
def test_a_worker_that_succeeded_and_was_removed_is_neither_missed_nor_made_again(
    spec: dict[str, int],
) -> None:
    """Found at 5,000 jobs: past 12,500 ended pods the pod garbage collector removes them, a
    succeeded worker among them while its job still runs. Once the status records its index
    the job goes on: no restart of a collective, no second run of a worker."""
    body = job(kubeflow_spec(**spec))
    kinds = [(kind.lower(), i) for kind, count in spec.items() for i in range(count)]
    running = settle(body, run(body, [pod(kind, i) for kind, i in kinds]))
    ended = [
        pod(kind, i, "Succeeded" if (kind, i) == ("worker", 1) else "Running") for kind, i in kinds
    ]
    recorded = run(running, ended)
    assert recorded.status["replicaStatuses"]["Worker"]["completedIndexes"] == "1"
    written = settle(running, recorded)
    gone = [p for p in ended if p.name != "mnist-worker-1"]
    decision = run(written, gone)
    assert decision.create == []
    assert decision.delete == []
    assert decision.status is None  # nothing to tell: the success stands as recorded
    assert decision.state == "Running"
    # Worker 0 (or the chief) then decides, as ever.
    deciding = "chief" if "Chief" in spec else "worker"
    done = [
        pod(p.name.split("-")[1], p.index, "Succeeded")
        if (p.name.split("-")[1], p.index) == (deciding, 0)
        else p
        for p in gone
    ]
    assert conditions(run(written, done))["Succeeded"] == ("True", "TFJobSucceeded")


def test_a_failed_pod_fails_the_job_with_its_exit_code() -> None:
    body = job(kubeflow_spec(Worker=2))
    running = settle(body, run(body, [pod("worker", 0), pod("worker", 1)]))
    seen = [pod("worker", 0), pod("worker", 1, "Failed", exit_code=3)]
    # Its peer still runs: the verdict waits for it, or for the window to end.
    held = run(running, seen)
    assert "Failed" not in conditions(held)
    assert held.look_again_after == pytest.approx(retries.SETTLE_SECONDS)
    later = NOW + dt.timedelta(seconds=retries.SETTLE_SECONDS)
    decision = run(settle(running, held), seen, now=later)
    assert conditions(decision)["Failed"] == ("True", "TFJobFailed")
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert "Worker 1 (pod mnist-worker-1) exited with code 3" in failed["message"]
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "TFJobFailed")]
    assert [p.name for p in decision.delete] == ["mnist-worker-0"]


def test_a_finished_job_creates_nothing_even_when_its_pods_are_gone() -> None:
    body = job(kubeflow_spec(Worker=2))
    finished = settle(body, run(body, [pod("worker", 0, "Succeeded"), pod("worker", 1)]))
    decision = run(finished, [], service=False)
    assert decision.create == []
    assert decision.status is None
    assert decision.state == "Succeeded"


def test_an_invalid_spec_fails_the_job_and_creates_nothing() -> None:
    spec = {
        "entryScript": "train.py",
        "scriptParams": {"--epochs": {"nested": "dict"}},
    }
    decision = run(job(spec), service=False)
    assert decision.create == []
    assert conditions(decision)["Failed"][1] == "InvalidSpec"


@pytest.mark.parametrize(
    ("template_spec", "field"),
    [
        (
            {"securityContext": {"runAsUser": "1000a"}},
            "spec.tfReplicaSpecs.Worker.template.spec.securityContext.runAsUser",
        ),
        (
            {"ephemeralContainers": [{"name": "debug", "image": "busybox:1"}]},
            "spec.tfReplicaSpecs.Worker.template.spec.ephemeralContainers",
        ),
        # Names the operator reserves (the CRD refuses them at apply; a job stored before it
        # did is failed here, never built with the template's volume in place of the key).
        (
            {"volumes": [{"name": "tfjob-ssh", "secret": {"secretName": "other-ssh-x"}}]},
            "spec.tfReplicaSpecs.Worker.template.spec.volumes: volume name 'tfjob-ssh' is the "
            "operator's",
        ),
    ],
)
def test_a_pod_template_field_the_pods_cannot_take_fails_the_job_naming_it(
    template_spec: dict[str, Any], field: str
) -> None:
    """Once a pass raised on these and was retried for ever, the job left Created."""
    spec = kubeflow_spec(Worker=1)
    spec["tfReplicaSpecs"]["Worker"]["template"] = {"spec": {**TEMPLATE["spec"], **template_spec}}
    decision = run(job(spec), service=False)
    assert decision.create == []
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert field in failed["message"]


@pytest.mark.parametrize(
    ("template_spec", "field"),
    [
        ({"volumes": [{"name": "tfjob-packages", "emptyDir": {}}]}, "volume name 'tfjob-packages'"),
        ({"initContainers": [{"name": "tfjob-source", "image": "x:1"}]}, "init container name"),
        ({"containers": [{"name": "tfjob-sidecar", "image": "x:1"}]}, "container name"),
        (
            {"containers": [{"name": "tensorflow", "env": [{"name": "TFJOB_PIP_INDEX_URL"}]}]},
            "variable name 'TFJOB_PIP_INDEX_URL'",
        ),
    ],
)
def test_an_estimator_template_with_the_operators_names_fails_the_job(
    template_spec: dict[str, Any], field: str
) -> None:
    spec = {"entryScript": "train.py", "template": {"spec": template_spec}}
    decision = run(job(spec), service=False)
    assert decision.create == []
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.template.spec" in failed["message"]
    assert field in failed["message"]


def test_a_spec_building_cannot_take_fails_the_job_with_nothing_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last net: an exception nothing foresaw fails the job, never a pass retried for ever."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("runAsUser")

    from tfjob_operator.core import decide as decide_module

    monkeypatch.setattr(decide_module, "desired_children", broken)
    decision = run(job(kubeflow_spec(Worker=2)), service=False)
    assert decision.create == []
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "cannot build this job's pods (KeyError: 'runAsUser')" in failed["message"]


def test_a_child_the_api_server_refused_fails_the_job() -> None:
    refusal = Problem("TFJobFailed", "TFJob ml/mnist has failed: the API server refused pod x")
    decision = run(job(kubeflow_spec(Worker=1)), [], service=False, refused=refusal)
    assert decision.create == []
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert failed["message"] == refusal.message


def test_a_job_being_deleted_is_left_to_garbage_collection() -> None:
    body = job(kubeflow_spec(Worker=1))
    body["metadata"]["deletionTimestamp"] = "2026-11-30T12:00:00Z"
    assert run(body, [], service=False) == Decision()


# ----- spec changes -----------------------------------------------------------------------
def test_a_spec_change_running_pods_cannot_take_is_reported_once() -> None:
    body = job(kubeflow_spec(Worker=2))
    first = run(body, service=False)
    built = {b["metadata"]["name"]: b for b in first.create if b["kind"] == "Pod"}
    pods = [
        dataclasses.replace(
            pod("worker", i),
            spec_hash=built[f"mnist-worker-{i}"]["metadata"]["annotations"]["tfjob.dev/spec-hash"],
        )
        for i in range(2)
    ]
    settled = settle(body, run(body, pods))
    changed_spec = kubeflow_spec(Worker=2)
    changed_spec["tfReplicaSpecs"]["Worker"]["template"] = {
        "spec": {"containers": [{"name": "tensorflow", "image": "tf:2.22"}]}
    }
    changed = {
        **settled,
        "spec": changed_spec,
        "metadata": {**settled["metadata"], "generation": 2},
    }
    decision = run(changed, pods)
    warnings = [e for e in decision.events if e.reason == "SpecChangeNotApplied"]
    assert len(warnings) == 1
    assert "mnist-worker-0, mnist-worker-1" in warnings[0].message
    assert decision.create == []
    assert decision.status["observedGeneration"] == 2
    again = run(settle(changed, decision), pods)
    assert [e.reason for e in again.events] == []


# ----- MPI --------------------------------------------------------------------------------
MPI_SPEC = {
    "image": "horovod:0.28.1",
    "entryScript": "train_horovod.py",
    "distribution": {"backend": "mpi", "nodeCount": 2, "processCountPerNode": 1},
}


KEYED = {"sshSecret": "mnist-ssh-x7k2q"}  # the name the API server generated


def mpi_job(status: dict[str, Any] | None = KEYED) -> dict[str, Any]:
    return job(MPI_SPEC, status=status)


def secrets_mounted(decision: Decision) -> set[str]:
    return {
        volume["secret"]["secretName"]
        for body in decision.create
        if body["kind"] == "Pod"
        for volume in body["spec"]["volumes"]
        if "secret" in volume
    }


def test_a_new_mpi_job_gets_its_key_first_and_its_pods_once_the_key_is_named() -> None:
    """The key Secret's name is generated by the API server (a tenant who reads the job cannot
    make it first with their own key): no pod until the status names it."""
    first = run(mpi_job(status=None), service=False)
    assert first.create_ssh_secret
    assert names(first.create) == [("ConfigMap", "mnist-mpi"), ("Service", "mnist")]
    assert first.look_again_after is not None
    assert first.look_again_after < 0.01
    keyed = {**first.status, **KEYED}  # the shell adds the Secret's name to this status
    second = run(job(MPI_SPEC, status=keyed))
    assert names(second.create) == [("Pod", "mnist-worker-0"), ("Pod", "mnist-worker-1")]
    assert secrets_mounted(second) == {"mnist-ssh-x7k2q"}
    assert second.create_ssh_secret  # again under that name: a 409 says it is there
    # The name stays on every status the operator writes.
    assert second.status is not None
    assert second.status["sshSecret"] == "mnist-ssh-x7k2q"


def test_an_mpi_launcher_comes_once_every_worker_is_ready_with_the_key_it_mounts() -> None:
    one_ready = [pod("worker", 0, ready=True), pod("worker", 1, ready=False)]
    assert run(mpi_job(), one_ready).create == []
    assert not run(mpi_job(), one_ready).create_ssh_secret
    decision = run(mpi_job(), [pod("worker", 0, ready=True), pod("worker", 1, ready=True)])
    assert names(decision.create) == [("Pod", "mnist-launcher-0")]
    assert secrets_mounted(decision) == {"mnist-ssh-x7k2q"}
    # Asked for with every pod that mounts it; the API server keeps the one that exists (409).
    assert decision.create_ssh_secret


def test_pods_made_before_the_key_was_on_the_status_keep_the_name_they_mount() -> None:
    """A job that ran through an operator upgrade: its replacement pods mount the Secret its
    running pods do (named from the job's uid then), and the status records it."""
    decision = run(mpi_job(status=None), [pod("worker", 0, ready=True)])
    assert names(decision.create) == [("Pod", "mnist-worker-1")]
    assert secrets_mounted(decision) == {f"mnist-ssh-{UID[:8]}"}
    assert decision.status is not None
    assert decision.status["sshSecret"] == f"mnist-ssh-{UID[:8]}"


def test_the_workers_an_mpi_launcher_waits_for_are_on_the_status_with_the_probes_port() -> None:
    """A worker whose sshd listens on another port runs but is never Ready: say so."""
    one_ready = [pod("worker", 0, ready=True), pod("worker", 1, ready=False)]
    decision = run(mpi_job(), one_ready)
    (waiting,) = decision.status["waiting"]
    assert (waiting["pod"], waiting["reason"]) == ("mnist-worker-1", "NotReady")
    assert "the launcher mnist-launcher-0 starts once every worker is Ready" in waiting["message"]
    assert "a TCP connection to port 2222 (spec.mpi.sshPort)" in waiting["message"]
    # Said once: the next pass over the same pods writes nothing.
    assert run(settle(mpi_job(), decision), one_ready).status is None
    ready = [pod("worker", 0, ready=True), pod("worker", 1, ready=True)]
    assert "waiting" not in run(settle(mpi_job(), decision), ready).status


def test_an_mpi_job_without_workers_fails_at_once_naming_the_field() -> None:
    """Its launcher would wait for workers for ever."""
    spec = {
        "tfReplicaSpecs": {
            "Launcher": {"replicas": 1, "restartPolicy": "Never", "template": TEMPLATE}
        },
        "mpi": {},
    }
    decision = run(job(spec), service=False)
    assert decision.create == []
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("spec.tfReplicaSpecs.Worker: an MPI job needs")


def test_an_mpi_jobs_configmap_is_made_again_when_gone_and_its_key_with_any_pod() -> None:
    running = [pod("worker", 0, ready=True), pod("worker", 1, ready=True), pod("launcher", 0)]
    decision = run(mpi_job(), running, objects=())
    assert names(decision.create) == [("ConfigMap", "mnist-mpi")]
    assert not decision.create_ssh_secret  # never read: made again with the next pod
    decision = run(mpi_job(), running[:1] + running[2:])
    assert names(decision.create) == [("Pod", "mnist-worker-1")]
    assert decision.create_ssh_secret


def test_a_configmap_held_by_another_keeps_an_mpi_jobs_pods_from_starting() -> None:
    decision = run(mpi_job(), objects=(("ConfigMap", "mnist-mpi", None),))
    assert names(decision.create) == []
    assert not decision.create_ssh_secret
    (waiting,) = decision.status["waiting"]
    assert (waiting["pod"], waiting["reason"]) == ("mnist-mpi", "NameInUse")
    assert "a ConfigMap named mnist-mpi exists that is not this job's" in waiting["message"]


@pytest.mark.parametrize(
    ("pods", "settled"),
    [
        ([pod("worker", 0, ready=True), pod("worker", 1, "Succeeded")], True),
        ([pod("worker", 0, ready=True), pod("worker", 1, ready=False)], False),
        ([pod("worker", 0, ready=True), pod("worker", 1, "Pending")], False),
        ([pod("worker", 0, ready=True)], False),  # worker 1 is about to be created
    ],
)
def test_counts_settle_when_no_pod_is_on_its_way(pods: list[PodObservation], settled: bool) -> None:
    """A count-only status write may wait for this (the shell decides how long)."""
    body = job(kubeflow_spec(Worker=2))
    decision = run(body, pods)
    assert decision.pods_settled is settled
    # The next pass sees what this one created (the shell's expectations show it until the
    # watch does).
    created = [
        dataclasses.replace(PodObservation.from_pod(b), owner_uid=UID)
        for b in decision.create
        if b["kind"] == "Pod"
    ]
    later = run(settle(body, decision), pods + created)
    assert later.status is None


# ----- time limits ------------------------------------------------------------------------
def with_run_policy(**policy: Any) -> dict[str, Any]:
    spec = kubeflow_spec(Worker=2)
    spec["runPolicy"] = policy
    return spec


def test_a_running_job_looks_again_at_its_deadline_and_fails_then() -> None:
    body = job(with_run_policy(activeDeadlineSeconds=60))
    pods = [pod("worker", 0), pod("worker", 1, "Pending")]
    started = settle(body, run(body, pods))
    assert started["status"]["startTime"].startswith("2026-11-30T12:00:00")
    half_way = run(started, pods, now=NOW + dt.timedelta(seconds=30))
    assert half_way.look_again_after == pytest.approx(30)
    assert half_way.state == "Running"
    late = run(started, pods, now=NOW + dt.timedelta(seconds=60, milliseconds=5))
    failed = next(c for c in late.status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "DeadlineExceeded")
    assert "activeDeadlineSeconds (60 s)" in failed["message"]
    assert late.status["completionTime"].startswith("2026-11-30T12:01:00")
    assert [p.name for p in late.delete] == ["mnist-worker-0", "mnist-worker-1"]
    assert ("Warning", "DeadlineExceeded") in [(e.type, e.reason) for e in late.events]


def test_the_deadline_stops_running_pods_even_when_cleanup_keeps_them() -> None:
    body = job(with_run_policy(activeDeadlineSeconds=5, cleanPodPolicy="None"))
    pods = [pod("worker", 0), pod("worker", 1, "Succeeded")]
    started = settle(body, run(body, pods))
    late = run(started, pods, now=NOW + dt.timedelta(seconds=6))
    assert [p.name for p in late.delete] == ["mnist-worker-0"]


def test_a_finished_job_is_deleted_when_its_ttl_runs_out() -> None:
    body = job(with_run_policy(ttlSecondsAfterFinished=30))
    done = [pod("worker", 0, "Succeeded"), pod("worker", 1, "Succeeded")]
    finished = settle(body, run(body, done))
    assert run(body, done).look_again_after == pytest.approx(30)
    later = run(finished, done, now=NOW + dt.timedelta(seconds=10))
    assert (later.delete_job, later.look_again_after) == (False, pytest.approx(20))
    assert run(finished, done, now=NOW + dt.timedelta(seconds=30)).delete_job
    running = settle(body, run(body, [pod("worker", 0), pod("worker", 1)]))
    assert not run(running, [], now=NOW + dt.timedelta(hours=1)).delete_job


# ----- gang scheduling ----------------------------------------------------------------------
GANG = OperatorSettings(pod_group_api="scheduling.k8s.io/v1alpha2")
GROUP = f"mnist-a1-{UID[:8]}"


def groups_of(decision: Decision) -> dict[str, str | None]:
    """Pod name -> the PodGroup it joins (None: scheduled alone)."""
    return {
        body["metadata"]["name"]: body["spec"].get("schedulingGroup", {}).get("podGroupName")
        for body in decision.create
        if body["kind"] == "Pod"
    }


def test_a_distributed_job_starts_as_one_gang_without_its_evaluator() -> None:
    decision = run(job(kubeflow_spec(Chief=1, Worker=2, PS=1, Evaluator=1)), settings=GANG)
    (group,) = [b for b in decision.create if b["kind"] == "PodGroup"]
    assert group["apiVersion"] == "scheduling.k8s.io/v1alpha2"
    assert group["metadata"]["name"] == GROUP
    assert group["metadata"]["ownerReferences"][0]["uid"] == UID
    assert group["spec"] == {"schedulingPolicy": {"gang": {"minCount": 4}}}
    assert groups_of(decision) == {
        "mnist-chief-0": GROUP,
        "mnist-worker-0": GROUP,
        "mnist-worker-1": GROUP,
        "mnist-ps-0": GROUP,
        "mnist-evaluator-0": None,
    }


def test_a_pod_group_held_by_another_keeps_the_gangs_pods_back_and_says_so() -> None:
    """The shell found the attempt's PodGroup name taken by a group that is not the job's
    (another owner, or another policy): no pod joins it, and the status names it."""
    body = job(kubeflow_spec(Worker=2, Evaluator=1))
    decision = run(body, settings=GANG, objects=(("PodGroup", GROUP, None),))
    assert names(decision.create) == []
    (waiting,) = decision.status["waiting"]
    assert (waiting["pod"], waiting["reason"]) == (GROUP, "NameInUse")
    assert f"a PodGroup named {GROUP} exists that is not this job's" in waiting["message"]
    # Once it is gone, the job makes its own and its pods join that.
    assert set(groups_of(run(body, settings=GANG)).values()) == {GROUP, None}


def test_min_available_sets_the_gangs_min_count() -> None:
    spec = kubeflow_spec(Worker=4)
    spec["runPolicy"] = {"schedulingPolicy": {"minAvailable": 3}}
    decision = run(job(spec), settings=GANG)
    (group,) = [b for b in decision.create if b["kind"] == "PodGroup"]
    assert group["spec"]["schedulingPolicy"]["gang"]["minCount"] == 3


def test_min_available_beyond_the_jobs_pods_fails_it() -> None:
    spec = kubeflow_spec(Worker=2, Evaluator=1)
    spec["runPolicy"] = {"schedulingPolicy": {"minAvailable": 3}}
    decision = run(job(spec), settings=GANG)
    assert decision.create == []
    assert conditions(decision)["Failed"] == ("True", "InvalidSpec")
    assert "minAvailable: 3 is more than the 2 pods that start together" in str(decision.status)


@pytest.mark.parametrize(
    ("spec", "settings"),
    [
        (kubeflow_spec(Worker=2), SETTINGS),  # the cluster serves no PodGroup API
        (kubeflow_spec(Worker=1, Evaluator=1), GANG),  # one pod is no gang
    ],
    ids=["no-api", "single-pod"],
)
def test_no_gang_without_the_api_or_for_one_pod(spec: dict, settings: OperatorSettings) -> None:
    decision = run(job(spec), settings=settings)
    assert "PodGroup" not in {b["kind"] for b in decision.create}
    assert set(groups_of(decision).values()) == {None}


def test_an_mpi_gang_is_its_workers_and_the_launcher_comes_alone() -> None:
    decision = run(mpi_job(), settings=GANG)
    (group,) = [b for b in decision.create if b["kind"] == "PodGroup"]
    assert group["spec"]["schedulingPolicy"]["gang"]["minCount"] == 2
    assert groups_of(decision) == {"mnist-worker-0": GROUP, "mnist-worker-1": GROUP}
    ready = [pod("worker", 0, ready=True), pod("worker", 1, ready=True)]
    launcher = run(mpi_job(), ready, settings=GANG)
    assert names(launcher.create) == [("Pod", "mnist-launcher-0")]
    assert groups_of(launcher) == {"mnist-launcher-0": None}


def test_a_replaced_pod_rejoins_its_attempts_gang_and_a_new_attempt_gets_a_new_one() -> None:
    first = run(job(kubeflow_spec(Worker=2)), settings=GANG)
    body = settle(job(kubeflow_spec(Worker=2)), first)
    again = run(body, [pod("worker", 0, "Pending", attempt=1)], settings=GANG)
    assert names(again.create) == [("PodGroup", GROUP), ("Pod", "mnist-worker-1")]
    assert groups_of(again) == {"mnist-worker-1": GROUP}
    body["status"]["attempt"] = 2
    second = run(body, [], settings=GANG)
    assert names(second.create)[0] == ("PodGroup", f"mnist-a2-{UID[:8]}")
    assert set(groups_of(second).values()) == {f"mnist-a2-{UID[:8]}"}


# ----- Kueue --------------------------------------------------------------------------------
def kueue_of(decision: Decision) -> dict[str, tuple[str | None, str | None, str | None]]:
    """Pod name -> (queue, pod group, total count) as Kueue reads them."""
    return {
        body["metadata"]["name"]: (
            body["metadata"]["labels"].get("kueue.x-k8s.io/queue-name"),
            body["metadata"]["labels"].get("kueue.x-k8s.io/pod-group-name"),
            (body["metadata"].get("annotations") or {}).get("kueue.x-k8s.io/pod-group-total-count"),
        )
        for body in decision.create
        if body["kind"] == "Pod"
    }


def test_a_queued_jobs_pods_form_one_kueue_pod_group() -> None:
    spec = kubeflow_spec(Chief=1, Worker=2, Evaluator=1)
    spec["runPolicy"] = {"schedulingPolicy": {"queue": "team-a"}}
    assert set(kueue_of(run(job(spec))).values()) == {("team-a", GROUP, "4")}


def test_kueues_own_label_on_the_job_names_the_queue_too() -> None:
    body = job(kubeflow_spec(Worker=2))
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-b"}
    assert set(kueue_of(run(body)).values()) == {("team-b", GROUP, "2")}


def test_an_mpi_launcher_runs_outside_the_queue() -> None:
    spec = {**MPI_SPEC, "runPolicy": {"schedulingPolicy": {"queue": "q"}}}
    assert set(kueue_of(run(job(spec, status=KEYED))).values()) == {("q", GROUP, "2")}
    ready = [pod("worker", 0, ready=True), pod("worker", 1, ready=True)]
    assert kueue_of(run(job(spec, status=KEYED), ready)) == {"mnist-launcher-0": (None, None, None)}


def test_a_queue_with_the_integration_off_fails_the_job_instead_of_skipping_the_queue() -> None:
    spec = kubeflow_spec(Worker=2)
    spec["runPolicy"] = {"schedulingPolicy": {"queue": "team-a"}}
    decision = run(job(spec), settings=OperatorSettings(queueing=False))
    assert decision.create == []
    assert conditions(decision)["Failed"] == ("True", "InvalidSpec")


def test_an_unqueued_job_carries_no_kueue_labels() -> None:
    assert set(kueue_of(run(job(kubeflow_spec(Worker=2)))).values()) == {(None, None, None)}


# ----- found by tests/unit/test_fuzz_core.py ------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [{}, {"entryScript": None}, {"entryScript": "train.py", **kubeflow_spec(Worker=1)}],
    ids=["neither-form", "null-entryScript", "both-forms"],
)
def test_a_spec_of_neither_or_both_forms_fails_the_job_instead_of_crashing(spec: dict) -> None:
    """The CRD refuses these at apply; one stored some other way must not crash a pass."""
    decision = run(job(spec))
    assert decision.create == []
    assert conditions(decision)["Failed"] == ("True", "InvalidSpec")
    assert "set exactly one of spec.tfReplicaSpecs" in str(decision.status)
