"""Restart policies, restart scope and backoffLimit, decided purely: which failure is retried,
how, what it costs, and when the job has had enough. No cluster."""

from __future__ import annotations

import datetime as dt
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
    decision = run(body, [pod("chief", 0), pod("worker", 0, "Failed", exit_code=code)])
    assert [p.name for p in decision.delete] == ["mnist-chief-0"]  # cleanPodPolicy Running
    assert conditions(decision)["Failed"] == ("True", "TFJobFailed")
    message = next(c for c in decision.status["conditions"] if c["type"] == "Failed")["message"]
    assert f"Worker 0 (pod mnist-worker-0) exited with code {code}" in message


def test_never_fails_the_job_on_any_code() -> None:
    body = running_job(spec("Never", Chief=1, Worker=1), pod("chief", 0), pod("worker", 0))
    decision = run(body, [pod("chief", 0), pod("worker", 0, "Failed", exit_code=137)])
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
    body = settle(body, run(body, [pod("chief", 0), pod("worker", 0)]))
    second = run(body, [pod("chief", 0), pod("worker", 0, "Failed", exit_code=143)])
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


def test_on_failure_replaces_an_evicted_pod_and_keeps_its_container_restarts() -> None:
    body = running_job(spec("OnFailure", Worker=2), pod("worker", 0), pod("worker", 1))
    body = settle(body, run(body, [pod("worker", 0), pod("worker", 1, restarts=2)]))
    evicted = pod("worker", 1, "Failed", restarts=2, reason="Evicted")
    decision = run(
        body,
        [pod("worker", 0), evicted],
    )
    # Two workers of a collective: the whole job restarts.
    assert {p.name for p in decision.delete} == {"mnist-worker-0", "mnist-worker-1"}
    assert decision.status["attempt"] == 2
    assert restarts(decision, "Worker") == (2, None)  # 2 container restarts; attempt counts 1


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
