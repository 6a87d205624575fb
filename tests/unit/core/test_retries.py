"""Restart policies, restart scope and backoffLimit, decided purely: which failure is retried,
how, what it costs, and when the job has had enough. No cluster."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from tests.support.factories import NOW, conditions, job, pod, run, settle
from tfjob_operator.api.labels import ATTEMPT_LABEL

pytestmark = pytest.mark.timeout(20)

T0 = "2026-11-30T11:59:00Z"
T1 = "2026-11-30T11:59:01Z"


def spec(
    policy: str = "ExitCode",
    *,
    backoff: int | None = None,
    scope: str | None = None,
    **replicas: int,
) -> dict[str, Any]:
    run_policy: dict[str, Any] = {}
    if backoff is not None:
        run_policy["backoffLimit"] = backoff
    if scope is not None:
        run_policy["restartScope"] = scope
    return {
        "tfReplicaSpecs": {
            kind: {
                "replicas": count,
                "restartPolicy": policy,
                "template": {"spec": {"containers": [{"name": "tensorflow", "image": "tf"}]}},
            }
            for kind, count in replicas.items()
        },
        "runPolicy": run_policy,
    }


def running_job(body_spec: dict[str, Any], *pods: Any) -> dict[str, Any]:
    """The job after a first pass saw ``pods``: its status is written."""
    body = job(body_spec)
    return settle(body, run(body, list(pods)))


def reasons(decision: Any) -> list[str]:
    return [e.reason for e in decision.events]


def restarts(decision: Any, kind: str) -> tuple[int | None, int | None]:
    counts = decision.status["replicaStatuses"][kind]
    return counts.get("restarts"), counts.get("containerRestarts")


def disruptions(decision: Any, kind: str) -> int | None:
    return decision.status["replicaStatuses"][kind].get("disruptions")


def verdict(body: dict[str, Any], pods: list[Any]) -> Any:
    """The pass that decides, once a permanent failure's wait for its running peers is over."""
    first = run(body, pods)
    if first.status is None or "settling" not in first.status:
        return first
    decide_at = dt.datetime.fromisoformat(first.status["settling"]["decideAt"])
    return run(settle(body, first), pods, now=decide_at)


# ----- ExitCode -------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [137, 143, 255, None])
def test_exit_code_replaces_a_pod_killed_by_a_signal_and_counts_it(code: int | None) -> None:
    body = running_job(
        spec(Chief=1, Worker=2, PS=1),
        pod("chief", 0),
        pod("worker", 0),
        pod("worker", 1),
        pod("ps", 0),
    )
    killed = pod("worker", 1, "Failed", exit_code=code, reason="OOMKilled" if code else "Evicted")
    decision = run(body, [pod("chief", 0), pod("worker", 0), killed, pod("ps", 0)])
    assert [p.name for p in decision.delete] == ["mnist-worker-1"]
    assert decision.create == []  # under its own name, once the old one is gone
    assert decision.status_first
    assert conditions(decision)["Restarting"] == ("True", "TFJobRestarting")
    assert conditions(decision)["Running"][0] == "False"
    assert decision.state == "Restarting"
    assert "Failed" not in conditions(decision)
    assert restarts(decision, "Worker") == (1, None)
    assert decision.restarts == {"pod": 1}
    assert reasons(decision) == ["TFJobRestarting"]
    assert "restart 1 of backoffLimit 6" in decision.events[0].message

    # The next pass sees the pod going: nothing is counted twice, nothing fails.
    again = settle(body, decision)
    going = pod("worker", 1, "Failed", exit_code=code, deleting=True)
    second = run(again, [pod("chief", 0), pod("worker", 0), going, pod("ps", 0)])
    assert second.delete == []
    assert second.create == []
    assert second.status is None or "Failed" not in conditions(second)
    # Once gone it is created again, and the job runs again when it does.
    third = run(again, [pod("chief", 0), pod("worker", 0), pod("ps", 0)])
    assert [o["metadata"]["name"] for o in third.create] == ["mnist-worker-1"]
    assert third.state == "Restarting"
    back = run(
        settle(again, third), [pod("chief", 0), pod("worker", 0), pod("worker", 1), pod("ps", 0)]
    )
    assert conditions(back)["Restarting"] == ("False", "TFJobRunning")
    assert conditions(back)["Running"] == ("True", "TFJobRunning")
    assert restarts(back, "Worker") == (1, None)


@pytest.mark.parametrize("code", [1, 2, 127])
def test_exit_code_fails_the_job_on_a_permanent_code_naming_pod_and_code(code: int) -> None:
    body = running_job(spec(Chief=1, Worker=1), pod("chief", 0), pod("worker", 0))
    decision = verdict(body, [pod("chief", 0), pod("worker", 0, "Failed", exit_code=code)])
    assert [p.name for p in decision.delete] == ["mnist-chief-0"]  # cleanPodPolicy Running
    assert conditions(decision)["Failed"] == ("True", "TFJobFailed")
    message = next(c for c in decision.status["conditions"] if c["type"] == "Failed")["message"]
    assert f"Worker 0 (pod mnist-worker-0) exited with code {code}" in message


def test_never_fails_the_job_on_any_code() -> None:
    body = running_job(spec("Never", Chief=1, Worker=1), pod("chief", 0), pod("worker", 0))
    decision = verdict(body, [pod("chief", 0), pod("worker", 0, "Failed", exit_code=137)])
    assert conditions(decision)["Failed"] == ("True", "TFJobFailed")
    assert "Restarting" not in conditions(decision)


# ----- backoffLimit ---------------------------------------------------------------------------
def test_backoff_limit_fails_the_job_naming_the_last_failure() -> None:
    body = running_job(
        spec(backoff=1, scope="Pod", Chief=1, Worker=1), pod("chief", 0), pod("worker", 0)
    )
    first = run(body, [pod("chief", 0), pod("worker", 0, "Failed", exit_code=137)])
    assert [p.name for p in first.delete] == ["mnist-worker-0"]
    body = settle(body, first)
    body = settle(body, run(body, [pod("chief", 0), pod("worker", 0, uid="new")]))
    second = run(body, [pod("chief", 0), pod("worker", 0, "Failed", exit_code=143, uid="new")])
    assert conditions(second)["Failed"] == ("True", "BackoffLimitExceeded")
    message = next(c for c in second.status["conditions"] if c["type"] == "Failed")["message"]
    assert "backoffLimit is 1" in message
    assert "Worker 0 (pod mnist-worker-0) exited with code 143" in message
    # Failed with cleanPodPolicy Running: the chief still running is stopped, not replaced.
    assert [p.name for p in second.delete] == ["mnist-chief-0"]
    assert restarts(second, "Worker") == (1, None)


def test_backoff_limit_zero_allows_no_restart() -> None:
    body = running_job(spec(backoff=0, Worker=1), pod("worker", 0))
    decision = run(body, [pod("worker", 0, "Failed", exit_code=137)])
    assert conditions(decision)["Failed"] == ("True", "BackoffLimitExceeded")


def test_on_failure_counts_the_kubelets_restarts_and_fails_past_the_limit() -> None:
    body = running_job(
        spec("OnFailure", backoff=2, Chief=1, Worker=2),
        pod("chief", 0),
        pod("worker", 0),
        pod("worker", 1),
    )
    once = run(
        body, [pod("chief", 0), pod("worker", 0), pod("worker", 1, restarts=1, last_exit_code=1)]
    )
    assert restarts(once, "Worker") == (1, 1)
    assert once.restarts == {"container": 1}
    assert reasons(once) == ["ContainerRestarted"]
    assert (
        "Worker 1 (pod mnist-worker-1): the kubelet restarted its container after exit "
        "code 1" in once.events[0].message
    )
    assert once.status_urgent  # a restart is written at once, not with the pod counts
    body = settle(body, once)
    assert (
        run(
            body,
            [pod("chief", 0), pod("worker", 0), pod("worker", 1, restarts=1, last_exit_code=1)],
        ).status
        is None
    )
    more = run(
        body,
        [
            pod("chief", 0),
            pod("worker", 0, restarts=1, last_exit_code=2),
            pod("worker", 1, restarts=2, last_exit_code=1),
        ],
    )
    assert conditions(more)["Failed"] == ("True", "BackoffLimitExceeded")
    assert restarts(more, "Worker") == (3, 3)


def test_on_failure_restarts_after_an_eviction_and_keeps_the_container_restarts() -> None:
    body = running_job(spec("OnFailure", Worker=2), pod("worker", 0), pod("worker", 1))
    body = settle(body, run(body, [pod("worker", 0), pod("worker", 1, restarts=2)]))
    evicted = pod("worker", 1, "Failed", restarts=2, reason="Evicted", disruption="Evicted")
    decision = run(
        body,
        [pod("worker", 0), evicted],
    )
    # Two workers of a collective: the whole job restarts.
    assert {p.name for p in decision.delete} == {"mnist-worker-0", "mnist-worker-1"}
    assert decision.status["attempt"] == 2
    # 2 container restarts counted; the eviction is a disruption, not a restart.
    assert restarts(decision, "Worker") == (2, None)
    assert disruptions(decision, "Worker") == 1


# ----- whole-job restart ----------------------------------------------------------------------
def test_a_collective_restarts_every_pod_as_a_new_attempt() -> None:
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    assert body["status"]["attempt"] == 1
    killed = pod("worker", 1, "Failed", exit_code=137, finished_at=T0)
    peer = pod("worker", 0, "Failed", exit_code=1, finished_at=T1)  # lost its peer: a consequence
    decision = run(body, [peer, killed])
    assert {p.name for p in decision.delete} == {"mnist-worker-0", "mnist-worker-1"}
    assert decision.create == []
    assert decision.status["attempt"] == 2
    assert decision.restarts == {"job": 1}
    assert decision.state == "Restarting"
    assert "restarting every pod as attempt 2" in decision.events[0].message
    body = settle(body, decision)
    # Nothing starts while a pod of attempt 1 is still there.
    waiting = run(body, [pod("worker", 1, "Failed", exit_code=137, deleting=True)])
    assert waiting.create == []
    assert waiting.delete == []
    fresh = run(body, [])
    created = [o for o in fresh.create if o["kind"] == "Pod"]
    assert [o["metadata"]["labels"][ATTEMPT_LABEL] for o in created] == ["2", "2"]
    body = settle(body, fresh)
    done = run(body, [pod("worker", 0, "Succeeded", attempt=2), pod("worker", 1, attempt=2)])
    assert conditions(done)["Succeeded"][0] == "True"
    assert conditions(done)["Restarting"][0] == "False"


def test_a_pod_of_an_earlier_attempt_is_deleted_and_holds_the_new_one_back() -> None:
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    body["status"]["attempt"] = 2
    decision = run(body, [pod("worker", 0, attempt=1)])
    assert [p.name for p in decision.delete] == ["mnist-worker-0"]
    assert decision.create == []


def test_the_first_failure_decides_a_collective_even_a_permanent_one() -> None:
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    broken = pod("worker", 0, "Failed", exit_code=1, finished_at=T0)
    later = pod("worker", 1, "Failed", exit_code=143, finished_at=T1)
    decision = run(body, [broken, later])
    assert conditions(decision)["Failed"] == ("True", "TFJobFailed")
    assert "attempt" not in decision.status or decision.status["attempt"] == 1
    assert "settling" not in decision.status


# ----- the first cause decides, whatever order the kubelets report in -------------------------
# The pass runs at NOW (12:00:00): these failures ended just before it.
JUST = "2026-11-30T11:59:55Z"
BEFORE_IT = "2026-11-30T11:59:54Z"


def test_a_peers_exit_seen_before_the_killed_workers_waits_then_the_kill_restarts() -> None:
    """Pass 1 sees worker 0's exit 1 (its collective broke) while worker 1 still shows Running:
    no verdict, a look when the window ends. Pass 2 sees worker 1's 137, which ended first:
    the whole job restarts as attempt 2."""
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    peer = pod("worker", 0, "Failed", exit_code=1, finished_at=JUST)
    held = run(body, [peer, pod("worker", 1)])
    assert "Failed" not in conditions(held)
    assert held.delete == []
    assert held.look_again_after == pytest.approx(10)
    body = settle(body, held) if held.status is not None else body
    killed = pod("worker", 1, "Failed", exit_code=137, finished_at=BEFORE_IT)
    decision = run(body, [peer, killed], now=NOW + dt.timedelta(seconds=3))
    assert decision.status["attempt"] == 2
    assert decision.state == "Restarting"
    assert "Worker 1 (pod mnist-worker-1) exited with code 137" in decision.events[0].message


def test_a_permanent_failure_whose_peers_run_on_fails_the_job_when_the_window_ends() -> None:
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    peer = pod("worker", 0, "Failed", exit_code=1, finished_at=JUST)
    late = run(body, [peer, pod("worker", 1)], now=NOW + dt.timedelta(seconds=11))
    assert conditions(late)["Failed"] == ("True", "TFJobFailed")
    assert (
        "Worker 0 (pod mnist-worker-0) exited with code 1"
        in late.status["conditions"][-1]["message"]
    )


def test_a_permanent_failure_with_no_peer_running_fails_at_once() -> None:
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    both = [
        pod("worker", 0, "Failed", exit_code=1, finished_at=BEFORE_IT),
        pod("worker", 1, "Failed", exit_code=1, finished_at=JUST),
    ]
    decision = run(body, both)
    assert conditions(decision)["Failed"] == ("True", "TFJobFailed")
    assert decision.look_again_after is None


def test_the_killed_workers_137_seen_first_restarts_without_waiting() -> None:
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    killed = pod("worker", 1, "Failed", exit_code=137, finished_at=JUST)
    decision = run(body, [pod("worker", 0), killed])
    assert decision.status["attempt"] == 2


def test_a_parameter_server_job_replaces_the_pod_alone_by_default() -> None:
    body = running_job(
        spec(Chief=1, Worker=2, PS=1),
        pod("chief", 0),
        pod("worker", 0),
        pod("worker", 1),
        pod("ps", 0),
    )
    decision = run(
        body,
        [
            pod("chief", 0),
            pod("worker", 0),
            pod("worker", 1, "Failed", exit_code=137),
            pod("ps", 0),
        ],
    )
    assert [p.name for p in decision.delete] == ["mnist-worker-1"]
    assert decision.status["attempt"] == 1


def test_restart_scope_pod_overrides_the_collective_default() -> None:
    body = running_job(spec(scope="Pod", Worker=2), pod("worker", 0), pod("worker", 1))
    decision = run(body, [pod("worker", 0), pod("worker", 1, "Failed", exit_code=137)])
    assert [p.name for p in decision.delete] == ["mnist-worker-1"]


def test_a_failure_after_success_restarts_nothing() -> None:
    body = running_job(spec(Chief=1, Worker=1), pod("chief", 0), pod("worker", 0))
    decision = run(
        body,
        [
            pod("chief", 0, "Succeeded", finished_at=T0),
            pod("worker", 0, "Failed", exit_code=137, finished_at=T1),
        ],
    )
    assert conditions(decision)["Succeeded"][0] == "True"
    assert "Restarting" not in conditions(decision)


def test_counts_survive_a_new_operator_they_live_on_the_status() -> None:
    body = running_job(spec("OnFailure", Worker=1), pod("worker", 0))
    body = settle(body, run(body, [pod("worker", 0, restarts=3)]))
    # A fresh operator reads the same status and pods: it counts nothing again.
    assert run(body, [pod("worker", 0, restarts=3)]).status is None
    assert body["status"]["replicaStatuses"]["Worker"]["restarts"] == 3


def test_a_stranger_pod_is_not_restarted() -> None:
    body = running_job(spec(Worker=1), pod("worker", 0))
    decision = run(body, [pod("worker", 0, "Failed", exit_code=137, owner="other")])
    assert decision.delete == []
    assert decision.status["waiting"][0]["reason"] == "NameInUse"


# ----- disruptions: the cluster took the pod --------------------------------------------------
EVICTED = {"disruption": "EvictionByEvictionAPI", "disrupted_at": JUST, "deleting": True}
DELETED_BY_SOMEONE = {"deleting": True, "deletion_began": JUST}


@pytest.mark.parametrize(
    ("taken", "says"),
    [
        (EVICTED, "was evicted"),
        (DELETED_BY_SOMEONE, "was deleted by someone other than the operator"),
        (
            {"disruption": "PreemptionByScheduler", "disrupted_at": JUST, "deleting": True},
            "was preempted by kube-scheduler",
        ),
        (
            {"disruption": "DeletionByPodGC", "phase": "Failed"},
            "was removed by the pod garbage collector",
        ),
    ],
    ids=["evicted", "deleted", "preempted", "node-lost"],
)
def test_a_disruption_restarts_a_collective_without_spending_backoff(
    taken: dict[str, Any], says: str
) -> None:
    """backoffLimit 0 allows no failure, yet the taken worker restarts the job: a disruption
    is counted apart, as a batch Job's podFailurePolicy on DisruptionTarget does."""
    body = running_job(spec(backoff=0, Worker=2), pod("worker", 0), pod("worker", 1))
    fields = dict(taken)
    phase = fields.pop("phase", "Running")
    decision = run(body, [pod("worker", 0), pod("worker", 1, phase, **fields)])
    assert decision.status["attempt"] == 2
    assert decision.state == "Restarting"
    assert disruptions(decision, "Worker") == 1
    assert restarts(decision, "Worker") == (None, None)
    assert decision.restarts == {"job": 1}
    assert says in decision.events[0].message
    assert "disruption 1 of disruptionLimit 10; backoffLimit is not spent" in (
        decision.events[0].message
    )
    # The taken worker is going already; its peer is stopped, and nothing starts before both
    # are gone.
    assert [p.name for p in decision.delete] == ["mnist-worker-0"] or phase == "Failed"
    assert decision.create == []


def test_a_peers_exit_after_its_worker_was_evicted_restarts_not_fails() -> None:
    """Pass 1 sees both the evicted worker (going) and its peer's exit 1 that followed."""
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    evicted = pod("worker", 1, **{**EVICTED, "disrupted_at": BEFORE_IT})
    peer = pod("worker", 0, "Failed", exit_code=1, finished_at=JUST)
    decision = run(body, [peer, evicted])
    assert decision.status["attempt"] == 2
    assert "Failed" not in conditions(decision)


def test_never_fails_on_the_scripts_exit_and_restarts_on_a_disruption() -> None:
    body = running_job(spec("Never", Worker=2), pod("worker", 0), pod("worker", 1))
    decision = run(body, [pod("worker", 0), pod("worker", 1, **EVICTED)])
    assert decision.status["attempt"] == 2
    assert disruptions(decision, "Worker") == 1


def test_the_disruption_limit_ends_a_job_whose_pods_keep_being_taken() -> None:
    body = running_job(
        {**spec(Worker=2), "runPolicy": {"disruptionLimit": 1}}, pod("worker", 0), pod("worker", 1)
    )
    body = settle(body, run(body, [pod("worker", 0), pod("worker", 1, **EVICTED)]))
    assert body["status"]["attempt"] == 2
    again = [pod("worker", 0, attempt=2), pod("worker", 1, attempt=2, uid="n", **EVICTED)]
    decision = run(body, again)
    assert conditions(decision)["Failed"] == ("True", "DisruptionLimitExceeded")
    message = next(c for c in decision.status["conditions"] if c["type"] == "Failed")["message"]
    assert "the cluster took its pods 2 times, and runPolicy.disruptionLimit is 1" in message


def test_the_operators_own_deletes_are_no_disruption() -> None:
    """A pod of an earlier attempt, one whose name the spec no longer wants, and one being
    replaced: the operator deletes them, and counts nothing for it."""
    body = running_job(spec(scope="Pod", Worker=2), pod("worker", 0), pod("worker", 1))
    body["status"]["attempt"] = 2
    body["status"]["replacing"] = ["uid-worker-1"]
    pods = [
        pod("worker", 0, attempt=1, deleting=True, deletion_began=JUST),
        pod("worker", 1, "Failed", exit_code=137, attempt=2, deleting=True),
        pod("worker", 2, attempt=2, deleting=True, deletion_began=JUST),
    ]
    decision = run(body, pods)
    assert decision.restarts == {}
    assert (
        decision.status is None or "disruptions" not in decision.status["replicaStatuses"]["Worker"]
    )


def test_a_failure_before_its_pod_was_deleted_is_the_pods_own() -> None:
    """A worker that exited 2 and was then deleted (the pod garbage collector, a person):
    its failure decides, not the deletion."""
    body = running_job(spec(Chief=1, Worker=1), pod("chief", 0), pod("worker", 0))
    failed = pod(
        "worker",
        0,
        "Failed",
        exit_code=2,
        finished_at=BEFORE_IT,
        deleting=True,
        deletion_began=JUST,
    )
    decision = verdict(body, [pod("chief", 0), failed])
    assert "Restarting" not in conditions(decision)
    assert decision.status["attempt"] == 1


# ----- a parameter-server job -----------------------------------------------------------------
def ps_job() -> dict[str, Any]:
    return running_job(
        spec(Chief=1, Worker=2, PS=1),
        pod("chief", 0),
        pod("worker", 0),
        pod("worker", 1),
        pod("ps", 0),
    )


def test_a_parameter_server_jobs_taken_worker_is_replaced_alone_and_counted_once() -> None:
    body = ps_job()
    evicted = pod("worker", 1, **EVICTED)
    others = [pod("chief", 0), pod("worker", 0), pod("ps", 0)]
    decision = run(body, [*others, evicted])
    assert decision.status["attempt"] == 1
    assert decision.delete == []  # it is going already
    assert decision.status["replacing"] == ["uid-worker-1"]
    assert disruptions(decision, "Worker") == 1
    assert "replacing the pod (disruption 1 of disruptionLimit 10" in decision.events[0].message
    body = settle(body, decision)
    # Still going, seen again (a re-list, a new operator): counted once.
    assert run(body, [*others, evicted]).status is None
    # Gone: made again under its name, and the uid leaves the list.
    back = run(body, others)
    assert [o["metadata"]["name"] for o in back.create if o["kind"] == "Pod"] == ["mnist-worker-1"]
    assert "replacing" not in back.status
    assert disruptions(back, "Worker") == 1


@pytest.mark.parametrize("lost", ["ps", "chief"])
def test_a_parameter_server_jobs_lost_ps_or_chief_restarts_the_whole_job(lost: str) -> None:
    """The variables live on the parameter servers, the coordinator on the chief: neither can
    be replaced alone. The chief's exit 1 that follows a lost PS is its consequence."""
    body = ps_job()
    pods = {
        "chief": pod("chief", 0),
        "worker0": pod("worker", 0),
        "worker1": pod("worker", 1),
        "ps": pod("ps", 0),
    }
    pods[lost] = pod(lost, 0, **{**EVICTED, "disrupted_at": BEFORE_IT})
    if lost == "ps":
        pods["chief"] = pod(
            "chief", 0, "Failed", exit_code=1, finished_at=JUST, message="remote target lost"
        )
    decision = run(body, list(pods.values()))
    assert decision.status["attempt"] == 2
    assert {p.name for p in decision.delete} == {p.name for name, p in pods.items() if name != lost}
    assert disruptions(decision, lost.capitalize() if lost == "chief" else "PS") == 1


# ----- each failure counts once ---------------------------------------------------------------
def test_a_replaced_pods_failure_counts_once_whatever_happens_before_its_delete() -> None:
    """restartScope Pod: the count is written, then the delete is refused, times out, or the
    operator is killed. The next pass (this operator or a new one) finds the pod still
    Failed: it deletes it again and counts nothing."""
    body = running_job(
        spec(backoff=1, scope="Pod", Chief=1, Worker=1), pod("chief", 0), pod("worker", 0)
    )
    failed = pod("worker", 0, "Failed", exit_code=137)
    first = run(body, [pod("chief", 0), failed])
    assert first.status_first
    assert [p.name for p in first.delete] == ["mnist-worker-0"]
    body = settle(body, first)
    for _ in range(3):
        again = run(body, [pod("chief", 0), failed])
        assert [p.name for p in again.delete] == ["mnist-worker-0"]
        assert again.restarts == {}
        assert again.status is None  # nothing new to count
    assert body["status"]["replicaStatuses"]["Worker"]["restarts"] == 1


def test_a_collectives_restart_counts_once_whatever_happens_before_its_deletes() -> None:
    body = running_job(spec(backoff=1, Worker=2), pod("worker", 0), pod("worker", 1))
    failed = [pod("worker", 0), pod("worker", 1, "Failed", exit_code=137)]
    body = settle(body, run(body, failed))
    assert body["status"]["attempt"] == 2
    again = run(body, failed)  # the deletes did not happen
    assert {p.name for p in again.delete} == {"mnist-worker-0", "mnist-worker-1"}
    assert again.restarts == {}
    assert again.status is None


# ----- a member gone while nobody watched -----------------------------------------------------
def test_a_member_missing_from_a_running_collective_restarts_it() -> None:
    """Deleted or lost while the operator was down: a collective never takes a member back
    into the attempt it left."""
    body = running_job(spec(Worker=3), pod("worker", 0), pod("worker", 1), pod("worker", 2))
    decision = run(body, [pod("worker", 0), pod("worker", 2)])
    assert decision.status["attempt"] == 2
    assert decision.create == []
    assert "Worker 1 (pod mnist-worker-1) is gone" in decision.events[0].message
    assert disruptions(decision, "Worker") == 1


def test_a_member_that_never_was_is_created_not_counted() -> None:
    """Its create failed in the first pass: the status never counted it."""
    body = job(spec(Worker=2))
    first = run(body, [pod("worker", 0)])
    body = settle(body, first)
    body["status"]["replicaStatuses"]["Worker"]["active"] = 1
    decision = run(body, [pod("worker", 0)])
    assert [o["metadata"]["name"] for o in decision.create if o["kind"] == "Pod"] == [
        "mnist-worker-1"
    ]
    assert (decision.status or {}).get("attempt", 1) == 1


# ----- the first cause decides, in any order and across passes -------------------------------
# An MPI job: worker 1 is killed (137) at 11:59:50, worker 0 and the launcher exit 1 after
# it. Each kubelet reports when it does: every order, and every grouping into passes.
KILLED_AT, PEER_AT, LAUNCHER_AT = (
    "2026-11-30T11:59:50Z",
    "2026-11-30T11:59:51Z",
    "2026-11-30T11:59:52Z",
)
MPI = {
    "tfReplicaSpecs": {
        "Launcher": spec(Launcher=1)["tfReplicaSpecs"]["Launcher"],
        "Worker": spec(Worker=2)["tfReplicaSpecs"]["Worker"],
    },
    "mpi": {},
}
KILLS = {
    "sigkill": {"phase": "Failed", "exit_code": 137, "finished_at": KILLED_AT},
    "evicted": {
        "disruption": "EvictionByEvictionAPI",
        "disrupted_at": KILLED_AT,
        "deleting": True,
    },
    "deleted": {"deleting": True, "deletion_began": KILLED_AT},
}


def _passes(items: list[str]) -> list[list[list[str]]]:
    """Every way of seeing ``items`` in order, split into consecutive passes."""
    if not items:
        return [[]]
    ways = []
    for cut in range(1, len(items) + 1):
        for rest in _passes(items[cut:]):
            ways.append([items[:cut], *rest])
    return ways


ORDERS = [
    (kill, passes)
    for kill in KILLS
    for order in itertools.permutations(["kill", "peer", "launcher"])
    for passes in _passes(list(order))
]


@pytest.mark.parametrize(
    ("kill", "passes"),
    ORDERS,
    ids=[f"{k}-{'|'.join(','.join(p) for p in ps)}" for k, ps in ORDERS],
)
def test_the_killed_worker_decides_whatever_order_the_kubelets_report_in(
    kill: str, passes: list[list[str]]
) -> None:
    body = running_job(MPI, pod("launcher", 0), pod("worker", 0), pod("worker", 1))
    ended = {
        "kill": pod("worker", 1, **KILLS[kill]),
        "peer": pod("worker", 0, "Failed", exit_code=1, finished_at=PEER_AT),
        "launcher": pod("launcher", 0, "Failed", exit_code=1, finished_at=LAUNCHER_AT),
    }
    running = {
        "kill": pod("worker", 1),
        "peer": pod("worker", 0),
        "launcher": pod("launcher", 0),
    }
    seen: set[str] = set()
    for number, batch in enumerate(passes):
        seen |= set(batch)
        pods = [ended[k] if k in seen else running[k] for k in ("launcher", "peer", "kill")]
        decision = run(body, pods, now=NOW + dt.timedelta(seconds=number))
        assert "Failed" not in conditions(decision) if decision.status else True
        if "kill" in seen:
            assert decision.status["attempt"] == 2, decision.status
            assert "Worker 1 (pod mnist-worker-1)" in decision.events[0].message
            return
        if decision.status is not None:
            body = settle(body, decision)
    raise AssertionError("the kill was never seen")


def test_a_settling_verdict_is_kept_on_the_status_for_a_new_operator() -> None:
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    peer = pod("worker", 0, "Failed", exit_code=1)  # no finish time: the window starts now
    held = run(body, [peer, pod("worker", 1)])
    settling = held.status["settling"]
    assert settling["pod"] == "mnist-worker-0"
    assert settling["decideAt"] == "2026-11-30T12:00:15Z"
    body = settle(body, held)
    # A new operator 10 s later: the same window, not a new one from its own clock.
    later = run(body, [peer, pod("worker", 1)], now=NOW + dt.timedelta(seconds=10))
    assert later.status is None
    assert later.look_again_after == pytest.approx(5)
    done = run(body, [peer, pod("worker", 1)], now=NOW + dt.timedelta(seconds=15))
    assert conditions(done)["Failed"] == ("True", "TFJobFailed")
    assert "settling" not in done.status


def test_an_earlier_attempts_pod_that_ends_well_while_going_decides_nothing() -> None:
    """Attempt 1 was given up (worker 1 evicted); its worker 0, told to stop, ends with exit 0
    during its grace period: the job is not Succeeded by it, attempt 2 runs."""
    body = running_job(spec(Worker=2), pod("worker", 0), pod("worker", 1))
    body = settle(body, run(body, [pod("worker", 0), pod("worker", 1, **EVICTED)]))
    assert body["status"]["attempt"] == 2
    going = [pod("worker", 0, "Succeeded", finished_at=JUST, deleting=True)]
    decision = run(body, going)
    assert decision.status is None or "Succeeded" not in conditions(decision)
    fresh = run(body, [])
    assert [o["metadata"]["labels"][ATTEMPT_LABEL] for o in fresh.create if o["kind"] == "Pod"] == [
        "2",
        "2",
    ]
