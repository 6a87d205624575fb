"""Metrics, permission problems and the operator's process settings, without a cluster."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from tfjob_localcluster import processes
from tfjob_operator import __main__ as cli
from tfjob_operator.settings import OperatorSettings
from tfjob_operator.shell import kube, metrics, workqueue

pytestmark = pytest.mark.timeout(10)

RBAC_MESSAGE = (
    'pods is forbidden: User "system:serviceaccount:ops:tfjob-operator" cannot create resource '
    '"pods" in API group "" in the namespace "team-a"'
)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_job_states_gauge_counts_each_job_once() -> None:
    gauge = Gauge("jobs", "test", ["state"], registry=CollectorRegistry())
    states = metrics.JobStates(gauge)

    def value(state: str) -> float:
        return gauge.labels(state=state)._value.get()

    assert value("Running") == 0
    states.seen(("ns", "a"))
    assert value("Unknown") == 1
    states.set(("ns", "a"), "Running")
    states.set(("ns", "b"), "Running")
    states.set(("ns", "b"), "Running")  # a pass that changed nothing
    assert (value("Unknown"), value("Running")) == (0, 2)
    states.seen(("ns", "a"))  # a failed pass keeps the state it had
    states.set(("ns", "a"), "Succeeded")
    assert (value("Running"), value("Succeeded")) == (1, 1)
    states.forget(("ns", "b"))
    states.forget(("ns", "gone"))
    assert (value("Running"), value("Succeeded")) == (0, 1)


def test_rbac_refusal_becomes_forbidden_naming_verb_and_resource() -> None:
    refusal = kube.error_for(403, RBAC_MESSAGE, "team-a")
    assert isinstance(refusal, kube.Forbidden)
    assert (refusal.verb, refusal.resource, refusal.namespace) == ("create", "pods", "team-a")
    assert 'may not create "pods" in namespace "team-a"' in str(refusal)
    assert "grant the verb 'create' on 'pods'" in str(refusal)


def test_an_owner_reference_refusal_names_the_finalizers_permission() -> None:
    """OwnerReferencesPermissionEnforcement refuses a child with blockOwnerDeletion unless the
    operator may update its job's finalizers: a permission to grant, not a job to fail."""
    message = (
        'pods "x" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a '
        "resource you can't set finalizers on: , <nil>"
    )
    refusal = kube.error_for(403, message, "team-a")
    assert isinstance(refusal, kube.Forbidden)
    assert (refusal.verb, refusal.resource) == ("update", "tensorflowjobs/finalizers")


@pytest.mark.parametrize(
    ("status", "message", "meaning"),
    [
        # A 403 from admission (pod security, a policy) is not a permission the operator lacks.
        (403, 'pods "x" is forbidden: violates PodSecurity "restricted"', kube.Rejected),
        (403, 'pods "x" is forbidden: exceeded quota: gpus', kube.ApiError),
        (422, 'Pod "x" is invalid: spec.containers[0].image: Required value', kube.Rejected),
        (409, 'pods "x" already exists', kube.Conflict),
        (500, "etcdserver: request timed out", kube.ApiError),
    ],
)
def test_other_error_answers_keep_their_meaning(
    status: int, message: str, meaning: type[Exception]
) -> None:
    error = kube.error_for(status, message, "team-a")
    assert type(error) is meaning
    assert isinstance(error, kube.ApiError)
    assert error.message == message


def test_status_message_reads_a_status_body_or_the_raw_text() -> None:
    body = json.dumps({"kind": "Status", "code": 403, "message": RBAC_MESSAGE}).encode()
    assert kube.status_message(403, body) == RBAC_MESSAGE
    assert kube.status_message(502, b"Bad Gateway") == "Bad Gateway"
    assert kube.status_message(503, b"") == "HTTP 503"


@pytest.mark.asyncio
async def test_explained_failures_log_one_line_and_back_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workqueue, "MIN_RETRY_DELAY", 0.01)
    attempts = 0
    done = asyncio.Event()

    async def work(key: object) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise workqueue.RetryLater("permission denied: the operator may not create pods")
        done.set()

    caplog.set_level(logging.ERROR, logger=workqueue.__name__)
    queue = workqueue.WorkQueue(work)
    queue.trigger(("team-a", "job"))
    await asyncio.wait_for(done.wait(), timeout=5)
    lines = [r for r in caplog.records if r.name == workqueue.__name__]
    assert [r.getMessage().split(":")[0] for r in lines] == [
        "reconcile of team-a/job failed (attempt 1)",
        "reconcile of team-a/job failed (attempt 2)",
    ]
    assert "may not create pods; retrying in 0 s" in lines[0].getMessage()
    assert all(r.exc_info is None for r in lines), "no traceback for an explained failure"


def test_new_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFJOB_MANAGE_ADMISSION_POLICY", "false")
    monkeypatch.setenv("TFJOB_CLUSTER_SCANNING", "false")
    settings = OperatorSettings.from_environment({"cluster_scanning": True})
    assert settings.manage_admission_policy is False
    assert settings.cluster_scanning is True  # the flag wins
    assert OperatorSettings().manage_admission_policy is True


def test_priority_random_draws_distinct_positive_priorities() -> None:
    drawn = {cli._priority("random") for _ in range(20)}
    assert len(drawn) > 1
    assert all(p > 0 for p in drawn)
    assert cli._priority("7") == 7


def test_metrics_endpoint_serves_the_operator_metrics() -> None:
    port = processes.free_port()
    metrics.serve(port, "127.0.0.1")
    metrics.PODS_CREATED.labels(replica_type="worker").inc()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["tfjob_operator_pods_created"].type == "counter"
    assert families["tfjob_operator_reconcile_duration_seconds"].type == "histogram"
    assert families["tfjob_operator_jobs"].type == "gauge"
    assert families["tfjob_operator_api_errors"].type == "counter"
    assert not [line for line in text.splitlines() if "_created{" in line], "no *_created series"
