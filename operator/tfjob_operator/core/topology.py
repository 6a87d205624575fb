"""Network identities of a job's pods and the TF_CONFIG each one gets. Pure functions.

Every pod sets ``hostname`` (its own name) and ``subdomain`` (the job's headless Service), so its
stable DNS name is ``<pod>.<job>.<namespace>.svc.<cluster-domain>``; TF_CONFIG lists those names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tfjob_operator.api.v1alpha1 import ReplicaSpecs, ReplicaType

DEFAULT_PORT = 2222
PORT_NAME = "tfjob-port"
TRAINER_CONTAINER = "tensorflow"


def chief_type(replica_specs: ReplicaSpecs) -> ReplicaType | None:
    """The replica type whose pod 0 decides success: the MPI launcher, Chief/Master, else
    Worker."""
    present = dict(replica_specs.items())
    for candidate in (ReplicaType.LAUNCHER, ReplicaType.CHIEF, ReplicaType.MASTER):
        if candidate in present and present[candidate].replicas > 0:
            return candidate
    return ReplicaType.WORKER if ReplicaType.WORKER in present else None


def tf_task_type(replica_type: ReplicaType) -> str:
    """TF_CONFIG's lower-case job name of a replica type (Master stays `master`, as in Kubeflow)."""
    return replica_type.value.lower()


def pod_name(job_name: str, replica_type: ReplicaType, index: int) -> str:
    return f"{job_name}-{tf_task_type(replica_type)}-{index}"


def pod_names(
    job: str, replica_specs: ReplicaSpecs, *, outside: tuple[ReplicaType, ...] = ()
) -> list[str]:
    """The names of the job's pods, but those of the ``outside`` replica types."""
    return [
        pod_name(job, replica_type, index)
        for replica_type, spec in replica_specs.items()
        if replica_type not in outside
        for index in range(spec.replicas)
    ]


def pod_fqdn(job_name: str, namespace: str, pod: str, cluster_domain: str) -> str:
    return f"{pod}.{job_name}.{namespace}.svc.{cluster_domain}"


def trainer_container(containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The container that trains: the one named `tensorflow`, else the first."""
    for container in containers:
        if container.get("name") == TRAINER_CONTAINER:
            return container
    return containers[0]


def declared_port(containers: list[dict[str, Any]]) -> int:
    """The trainer container's `tfjob-port`, or 2222 when it declares none."""
    for port in trainer_container(containers).get("ports") or []:
        if port.get("name") == PORT_NAME:
            return int(port["containerPort"])
    return DEFAULT_PORT


@dataclass(frozen=True)
class ReplicaGroup:
    """What TF_CONFIG needs to know of one replica type."""

    replica_type: ReplicaType
    replicas: int
    port: int


def is_distributed(groups: Iterable[ReplicaGroup]) -> bool:
    """A job of one pod needs no TF_CONFIG: TensorFlow then runs single-process."""
    return sum(g.replicas for g in groups) > 1


def cluster_spec(
    job_name: str, namespace: str, groups: Iterable[ReplicaGroup], cluster_domain: str
) -> dict[str, list[str]]:
    """The training cluster: every replica type except the evaluator, keyed by TF job name.

    The evaluator is left out on purpose: a ParameterServerStrategy chief connects to every
    task in `cluster` and waits forever for an evaluator, which runs no server.
    """
    cluster: dict[str, list[str]] = {}
    for group in sorted(groups, key=lambda g: tf_task_type(g.replica_type)):
        if group.replica_type is ReplicaType.EVALUATOR or group.replicas == 0:
            continue
        pods = (pod_name(job_name, group.replica_type, i) for i in range(group.replicas))
        cluster[tf_task_type(group.replica_type)] = [
            f"{pod_fqdn(job_name, namespace, pod, cluster_domain)}:{group.port}" for pod in pods
        ]
    return cluster


def tf_config(
    cluster: Mapping[str, list[str]],
    replica_type: ReplicaType,
    index: int,
    *,
    own_address: str,
) -> str:
    """TF_CONFIG of one pod, as compact JSON.

    Training tasks get the training cluster. The evaluator gets that cluster plus itself, since
    TensorFlow requires a task's own type to appear in its cluster.
    """
    task_cluster = dict(cluster)
    if replica_type is ReplicaType.EVALUATOR:
        task_cluster["evaluator"] = [own_address]
    document = {
        "cluster": dict(sorted(task_cluster.items())),
        "task": {"type": tf_task_type(replica_type), "index": index},
        "environment": "cloud",
    }
    return json.dumps(document, separators=(",", ":"))
