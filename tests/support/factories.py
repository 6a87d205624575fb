"""Builders of jobs, pods and passes for the core's table tests: a job body, a pod as the cache
observes it, one pass decided over them, and the job as its status write leaves it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tfjob_operator.api.v1alpha1 import ReplicaType
from tfjob_operator.core.compile import compile_job
from tfjob_operator.core.decide import Decision, decide
from tfjob_operator.core.observed import Observed, PodObservation, Problem
from tfjob_operator.settings import OperatorSettings

SETTINGS = OperatorSettings()


NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


UID = "5e0c1a2b-job"


TEMPLATE = {"spec": {"containers": [{"name": "tensorflow", "image": "tf:2.21"}]}}


TYPES = {t.value.lower(): t for t in ReplicaType}


def kubeflow_spec(clean: str | None = None, **replicas: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tfReplicaSpecs": {
            kind: {"replicas": count, "restartPolicy": "Never", "template": TEMPLATE}
            for kind, count in replicas.items()
        }
    }
    if clean is not None:
        spec["runPolicy"] = {"cleanPodPolicy": clean}
    return spec


def job(
    spec: dict[str, Any], *, status: dict[str, Any] | None = None, generation: int = 1
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {
            "name": "mnist",
            "namespace": "ml",
            "uid": UID,
            "generation": generation,
            "resourceVersion": "100",
        },
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def pod(
    kind: str, index: int, phase: str = "Running", *, owner: str = UID, **fields: Any
) -> PodObservation:
    fields.setdefault("uid", f"uid-{kind}-{index}")
    return PodObservation(
        name=f"mnist-{kind}-{index}",
        replica_type=TYPES[kind],
        index=index,
        phase=phase,
        owner_uid=owner,
        **fields,
    )


def run(
    body: dict[str, Any],
    pods: list[PodObservation] = (),  # type: ignore[assignment]
    *,
    service: bool = True,
    refused: Problem | None = None,
    now: dt.datetime = NOW,
    objects: tuple[tuple[str, str, str | None], ...] | None = None,
    settings: OperatorSettings = SETTINGS,
) -> Decision:
    """One pass; the job's Service (and, for an MPI job, its hostfile ConfigMap) exist unless
    ``service`` is False or ``objects`` says otherwise."""
    if objects is None:
        objects = (("ConfigMap", "mnist-mpi", UID),) if service else ()
    observed = Observed(tuple(pods), (UID,) if service else (), objects)
    return decide(
        body, compile_job(body["spec"], settings), observed, settings, now, refused=refused
    )


def settle(body: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """The job as the API server stores it after the decision's status write."""
    assert decision.status is not None
    return {**body, "status": decision.status}


def names(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


def conditions(decision: Decision) -> dict[str, tuple[str, str]]:
    assert decision.status is not None
    return {c["type"]: (c["status"], c["reason"]) for c in decision.status["conditions"]}
