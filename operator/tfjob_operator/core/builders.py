"""The children a job should have: its pods and its headless Service, as plain dicts. Pure.

``build_pod`` builds a pod from its (compiled) template: names, labels, owner reference,
hostname/subdomain, TF_CONFIG, the `tfjob-port`, restart policy and GPU placement, hashed into
the spec-hash annotation. The pass (``decide``) then adds what belongs to the run rather than
the spec, and so stays out of the hash: the attempt label, the gang's PodGroup and the Kueue
labels.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tfjob_operator.api.labels import (
    GPU_RESOURCE,
    JOB_NAME_LABEL,
    JOB_ROLE_LABEL,
    REPLICA_INDEX_LABEL,
    REPLICA_TYPE_LABEL,
    SPEC_HASH_ANNOTATION,
)
from tfjob_operator.api.v1alpha1 import (
    API_VERSION,
    KIND,
    Checkpoint,
    MPISpec,
    ReplicaSpec,
    ReplicaSpecs,
    ReplicaType,
    RestartPolicy,
)
from tfjob_operator.settings import OperatorSettings

from .checkpoint import apply_checkpoint
from .mpi import (
    decorate_launcher,
    decorate_worker,
    hostfile,
    hostfile_config_map,
    hostfile_config_map_name,
    ssh_secret,
    ssh_secret_prefix,
)
from .topology import (
    PORT_NAME,
    ReplicaGroup,
    chief_type,
    cluster_spec,
    declared_port,
    is_distributed,
    pod_fqdn,
    pod_name,
    tf_config,
    tf_task_type,
    trainer_container,
)


@dataclass(frozen=True)
class JobRef:
    """The identity of a job, as its children point back to it."""

    name: str
    namespace: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class DesiredChildren:
    service: dict[str, Any]
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # by pod name


def job_labels(job_name: str) -> dict[str, str]:
    return {JOB_NAME_LABEL: job_name}


def pod_restart_policy(policy: RestartPolicy) -> str:
    """ExitCode is decided by the operator, so its pods never restart on their own."""
    return "Never" if policy is RestartPolicy.EXIT_CODE else policy.value


def requests_gpus(pod_spec: dict[str, Any]) -> bool:
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        resources = container.get("resources") or {}
        for kind in ("limits", "requests"):
            amount = (resources.get(kind) or {}).get(GPU_RESOURCE)
            if amount is not None and str(amount) not in ("0", ""):
                return True
    return False


def _place_on_gpu_pool(
    pod_spec: dict[str, Any], node_pool: str | None, settings: OperatorSettings
) -> None:
    tolerations = pod_spec.setdefault("tolerations", [])
    if not any(t.get("key") == settings.gpu_toleration["key"] for t in tolerations):
        tolerations.append(dict(settings.gpu_toleration))
    pool = node_pool or settings.default_gpu_node_pool
    if pool:
        pod_spec.setdefault("nodeSelector", {})[settings.node_pool_label] = pool


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = [e for e in container.get("env") or [] if e.get("name") != name]
    env.append({"name": name, "value": value})
    container["env"] = env


def _ensure_port(container: dict[str, Any], port: int) -> None:
    ports = container.setdefault("ports", [])
    if not any(p.get("name") == PORT_NAME for p in ports):
        ports.append({"name": PORT_NAME, "containerPort": port, "protocol": "TCP"})


def spec_hash(pod: dict[str, Any]) -> str:
    """A digest of what the operator put in a pod, to notice a spec it can no longer apply."""
    canonical = json.dumps(pod, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _required(ssh_secret: str | None) -> str:
    if ssh_secret is None:
        raise ValueError("an MPI job's pods are built once its SSH key Secret is named")
    return ssh_secret


def build_pod(
    job: JobRef,
    replica_type: ReplicaType,
    index: int,
    replica: ReplicaSpec,
    *,
    cluster: dict[str, list[str]] | None,
    port: int,
    is_chief: bool,
    node_pool: str | None,
    settings: OperatorSettings,
    mpi: MPISpec | None = None,
    checkpoint: Checkpoint | None = None,
    ssh_secret: str | None = None,
) -> dict[str, Any]:
    """One pod; an MPI job's pods mount its key from the Secret ``ssh_secret``."""
    template = replica.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    metadata = template.get("metadata") or {}
    pod_spec = copy.deepcopy(template["spec"])
    name = pod_name(job.name, replica_type, index)

    labels = {
        **(metadata.get("labels") or {}),
        JOB_NAME_LABEL: job.name,
        REPLICA_TYPE_LABEL: tf_task_type(replica_type),
        REPLICA_INDEX_LABEL: str(index),
    }
    if mpi is not None:
        labels[JOB_ROLE_LABEL] = "launcher" if replica_type is ReplicaType.LAUNCHER else "worker"
    elif is_chief:
        labels[JOB_ROLE_LABEL] = "chief"

    pod_spec["hostname"] = name
    pod_spec["subdomain"] = job.name
    pod_spec["restartPolicy"] = pod_restart_policy(replica.restart_policy)
    trainer = trainer_container(pod_spec["containers"])
    if mpi is not None and replica_type is ReplicaType.LAUNCHER:
        decorate_launcher(
            pod_spec,
            trainer,
            job.name,
            mpi,
            ssh_secret=_required(ssh_secret),
            hide_gpus=not requests_gpus(pod_spec),
        )
    elif mpi is not None:
        decorate_worker(pod_spec, trainer, _required(ssh_secret), mpi)
    else:
        _ensure_port(trainer, port)
    if cluster is not None:
        own = f"{pod_fqdn(job.name, job.namespace, name, settings.cluster_domain)}:{port}"
        _set_env(trainer, "TF_CONFIG", tf_config(cluster, replica_type, index, own_address=own))
    if checkpoint is not None:
        apply_checkpoint(pod_spec, trainer, checkpoint, job.name)
    if requests_gpus(pod_spec):
        _place_on_gpu_pool(pod_spec, node_pool, settings)

    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": job.namespace,
            "labels": labels,
            "annotations": dict(metadata.get("annotations") or {}),
            "ownerReferences": [job.owner_reference()],
        },
        "spec": pod_spec,
    }
    pod["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(pod)
    return pod


def build_service(job: JobRef) -> dict[str, Any]:
    """One headless Service per job: it gives every pod its DNS name, ready or not."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "labels": job_labels(job.name),
            "ownerReferences": [job.owner_reference()],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": job_labels(job.name),
            # A headless Service needs no port for DNS; this one documents the default.
            "ports": [{"name": PORT_NAME, "port": 2222, "targetPort": PORT_NAME}],
        },
    }


def replica_groups(replica_specs: ReplicaSpecs) -> list[ReplicaGroup]:
    return [
        ReplicaGroup(replica_type, spec.replicas, declared_port_of(spec))
        for replica_type, spec in replica_specs.items()
    ]


def declared_port_of(spec: ReplicaSpec) -> int:
    containers = spec.template.model_dump(by_alias=True, exclude_none=True)["spec"]["containers"]
    return declared_port(containers)


def desired_children(
    job: JobRef,
    replica_specs: ReplicaSpecs,
    *,
    node_pool: str | None,
    settings: OperatorSettings,
    mpi: MPISpec | None = None,
    checkpoint: Checkpoint | None = None,
    ssh_secret: str | None = None,
    launcher_allowed: bool = True,
    only: Collection[str] | None = None,
) -> DesiredChildren:
    """Every child the job should have now (with ``only``, just the pods of those names: a pass
    builds what is missing, not the 1,000 pods of a large job that exist). For an MPI job the
    launcher is left out until ``launcher_allowed`` (its workers are ready, or it exists)."""
    groups = replica_groups(replica_specs)
    cluster = (
        cluster_spec(job.name, job.namespace, groups, settings.cluster_domain)
        if is_distributed(groups) and mpi is None
        else None
    )
    chief = chief_type(replica_specs)
    pods: dict[str, dict[str, Any]] = {}
    for (replica_type, spec), group in zip(replica_specs.items(), groups, strict=True):
        if replica_type is ReplicaType.LAUNCHER and not launcher_allowed:
            continue
        for index in range(spec.replicas):
            if only is not None and pod_name(job.name, replica_type, index) not in only:
                continue
            pod = build_pod(
                job,
                replica_type,
                index,
                spec,
                cluster=cluster,
                port=group.port,
                is_chief=replica_type is chief and index == 0,
                node_pool=node_pool,
                settings=settings,
                mpi=mpi,
                checkpoint=checkpoint,
                ssh_secret=ssh_secret,
            )
            pods[pod["metadata"]["name"]] = pod
    return DesiredChildren(service=build_service(job), pods=pods)


def worker_hosts(job: JobRef, replica_specs: ReplicaSpecs, settings: OperatorSettings) -> list[str]:
    workers = dict(replica_specs.items()).get(ReplicaType.WORKER)
    count = workers.replicas if workers else 0
    return [
        pod_fqdn(
            job.name,
            job.namespace,
            pod_name(job.name, ReplicaType.WORKER, i),
            settings.cluster_domain,
        )
        for i in range(count)
    ]


def mpi_hostfile_config_map(
    job: JobRef, replica_specs: ReplicaSpecs, mpi: MPISpec, settings: OperatorSettings
) -> dict[str, Any]:
    text = hostfile(
        worker_hosts(job, replica_specs, settings), mpi.slots_per_worker, mpi.implementation
    )
    return hostfile_config_map(
        hostfile_config_map_name(job.name),
        job.namespace,
        job_labels(job.name),
        job.owner_reference(),
        text,
    )


def mpi_ssh_secret(
    job: JobRef, name: str | None, private_key: bytes, public_key: bytes
) -> dict[str, Any]:
    """The job's key Secret: under ``name`` (the one on the job's status), or, the first time,
    a name the API server generates."""
    body = ssh_secret(
        name or ssh_secret_prefix(job.name),
        job.namespace,
        job_labels(job.name),
        job.owner_reference(),
        private_key,
        public_key,
    )
    if name is None:
        body["metadata"]["generateName"] = body["metadata"].pop("name")
    return body
