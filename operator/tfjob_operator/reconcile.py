"""One idempotent, level-based pass over a job: read it and its children, close the gap between
what should exist and what does, write the status once if it changed.

Every trigger (the job changed, one of its pods changed, a retry) runs this same pass; it never
depends on which trigger fired. The pure parts (compile, build, plan, status) are in their own
modules; this one only sequences them and does the I/O through ``kube``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import metrics
from .api.v1alpha1 import (
    CleanPodPolicy,
    LauncherCreation,
    MPISpec,
    ReplicaSpecs,
    ReplicaType,
    RunPolicy,
    SuccessPolicy,
    TensorFlowJobSpec,
    TensorFlowJobStatus,
)
from .builders import JobRef, desired_children, mpi_ssh_secret, requests_gpus
from .estimator import compile_replica_specs, effective_mpi
from .kube import Kube, Rejected
from .mpi import generate_ssh_keypair
from .settings import REPLICA_TYPE_LABEL, SPEC_HASH_ANNOTATION, OperatorSettings
from .status import (
    JobEvent,
    PodObservation,
    Problem,
    compute_status,
    is_finished,
)

log = logging.getLogger(__name__)


def describe_validation_error(error: ValidationError) -> str:
    """`spec.<field path>: <what is wrong>` for each problem, as kubectl would word it."""
    parts: list[str] = []
    for item in error.errors(include_url=False):
        where = ".".join(["spec", *(str(part) for part in item["loc"])])
        text = f"{where}: {item['msg'].removeprefix('Value error, ')}"
        if text not in parts:
            parts.append(text)
    return "; ".join(parts[:5])


def check_node_pools(
    replica_specs: ReplicaSpecs, node_pool: str | None, settings: OperatorSettings
) -> None:
    """A job asking for GPUs on a pool the operator knows to have none can never start."""
    pool = node_pool or settings.default_gpu_node_pool
    known = settings.node_pools.get(pool) if pool else None
    if known is None or known.gpu:
        return
    for replica_type, spec in replica_specs.items():
        pod_spec = spec.template.model_dump(by_alias=True, exclude_none=True)["spec"]
        if requests_gpus(pod_spec):
            raise ValueError(
                f"spec.nodePool: {replica_type.value} pods request GPUs, but node pool "
                f"{pool!r} has no GPUs"
            )


def launcher_may_start(
    mpi: MPISpec, replica_specs: ReplicaSpecs, pods: list[dict[str, Any]]
) -> bool:
    """An MPI launcher starts once every worker is Ready (unless asked to start at once), and
    once started it stays wanted whatever its workers do."""
    if mpi.launcher_creation is LauncherCreation.AT_STARTUP:
        return True
    observed = [PodObservation.from_pod(p) for p in pods]
    if any(p.replica_type is ReplicaType.LAUNCHER for p in observed):
        return True
    workers = dict(replica_specs.items()).get(ReplicaType.WORKER)
    ready = {
        p.index
        for p in observed
        if p.replica_type is ReplicaType.WORKER and p.ready and not p.deleting
    }
    return workers is not None and ready >= set(range(workers.replicas))


@dataclass
class Plan:
    """What one pass decided to do."""

    create: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (kind, body)
    delete: list[dict[str, Any]] = field(default_factory=list)  # pods
    stale: list[str] = field(default_factory=list)  # pods whose spec changed under them


def plan_children(
    desired_pods: dict[str, dict[str, Any]],
    desired_service: dict[str, Any],
    observed_pods: list[dict[str, Any]],
    observed_services: list[dict[str, Any]],
) -> Plan:
    """Create what is missing, delete pods nobody wants any more, notice changed specs."""
    plan = Plan()
    if not any(
        s["metadata"]["name"] == desired_service["metadata"]["name"] for s in observed_services
    ):
        plan.create.append(("Service", desired_service))
    observed = {p["metadata"]["name"]: p for p in observed_pods}
    for name, pod in desired_pods.items():
        current = observed.get(name)
        if current is None:
            plan.create.append(("Pod", pod))
            continue
        wanted = pod["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        if (current["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION) != wanted:
            plan.stale.append(name)
    for name, pod in observed.items():
        if name not in desired_pods and not pod["metadata"].get("deletionTimestamp"):
            plan.delete.append(pod)
    return plan


def pods_to_clean(policy: CleanPodPolicy, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods a finished job no longer needs, by cleanPodPolicy."""
    if policy is CleanPodPolicy.NONE:
        return []
    alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if policy is CleanPodPolicy.ALL:
        return alive
    return [
        p for p in alive if (p.get("status") or {}).get("phase") in ("Pending", "Running", None)
    ]


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def _previous_status(job: dict[str, Any]) -> TensorFlowJobStatus | None:
    try:
        return TensorFlowJobStatus.model_validate(job.get("status") or {})
    except ValidationError:
        return None


def _dump(status: TensorFlowJobStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


async def reconcile(
    kube: Kube,
    settings: OperatorSettings,
    namespace: str,
    name: str,
    now: dt.datetime | None = None,
) -> str | None:
    """One pass; returns the job's state afterwards (None: the job is gone or going)."""
    job = await kube.get_job(namespace, name)
    if job is None or job["metadata"].get("deletionTimestamp"):
        return None  # gone or going: garbage collection removes the children
    metadata = job["metadata"]
    ref = JobRef(name=name, namespace=namespace, uid=metadata["uid"])
    previous = _previous_status(job)
    finished = is_finished(previous)

    problem: Problem | None = None
    replica_specs: ReplicaSpecs | None = None
    spec: TensorFlowJobSpec | None = None
    try:
        spec = TensorFlowJobSpec.model_validate(job.get("spec") or {})
        replica_specs = compile_replica_specs(spec, settings)
        check_node_pools(replica_specs, spec.node_pool, settings)
    except ValidationError as error:
        problem = Problem("InvalidSpec", describe_validation_error(error))
    except ValueError as error:
        problem = Problem("InvalidSpec", str(error))

    pods = [p for p in await kube.list_pods(namespace, name) if owned_by(p, ref.uid)]
    events: list[JobEvent] = []

    if not finished and problem is None and spec is not None and replica_specs is not None:
        services = [s for s in await kube.list_services(namespace, name) if owned_by(s, ref.uid)]
        mpi = effective_mpi(spec)
        desired = desired_children(
            ref,
            replica_specs,
            node_pool=spec.node_pool,
            settings=settings,
            mpi=mpi,
            launcher_allowed=mpi is None or launcher_may_start(mpi, replica_specs, pods),
        )
        plan = plan_children(desired.pods, desired.service, pods, services)
        if mpi is not None and any(kind == "Pod" for kind, _ in plan.create):
            # Pods mount these: create them first. Both are created once (409 after that), so
            # the key pair generated here is used only if the Secret does not exist yet.
            plan.create[:0] = [
                ("Secret", mpi_ssh_secret(ref, *generate_ssh_keypair())),
                *(("ConfigMap", config_map) for config_map in desired.config_maps),
            ]
        for kind, body in plan.create:
            try:
                if await kube.create(kind, body):
                    if kind == "Pod":
                        replica_type = body["metadata"]["labels"].get(REPLICA_TYPE_LABEL, "")
                        metrics.PODS_CREATED.labels(replica_type=replica_type).inc()
                    log.info(
                        "%s/%s: created %s %s",
                        namespace,
                        name,
                        kind.lower(),
                        body["metadata"]["name"],
                    )
            except Rejected as rejected:
                problem = Problem(
                    "TFJobFailed" if kind == "Pod" else "ServiceRejected",
                    f"TFJob {namespace}/{name} has failed: the API server refused "
                    f"{kind.lower()} {body['metadata']['name']}: {rejected.message}",
                )
                break
        for pod in plan.delete:
            log.info("%s/%s: deleting unwanted pod %s", namespace, name, pod["metadata"]["name"])
            await kube.delete_pod(namespace, pod["metadata"]["name"], pod["metadata"]["uid"])
        if plan.stale and previous and previous.observed_generation != metadata.get("generation"):
            events.append(
                JobEvent(
                    "Warning",
                    "SpecChangeNotApplied",
                    "The new spec cannot be applied to pods that already run; it applies to "
                    f"pods created from now on. Pods still on the old spec: "
                    f"{', '.join(sorted(plan.stale))}. Delete them (or the job) to apply it.",
                )
            )

    status, transitions = compute_status(
        job_name=name,
        namespace=namespace,
        replica_specs=replica_specs,
        pods=[PodObservation.from_pod(p) for p in pods],
        previous=previous,
        generation=metadata.get("generation"),
        success_policy=spec.success_policy if spec else SuccessPolicy.DEFAULT,
        now=now or dt.datetime.now(dt.UTC),
        problem=problem,
    )
    events = transitions + events

    if is_finished(status):
        run_policy = (spec.run_policy if spec else None) or RunPolicy()
        for pod in pods_to_clean(run_policy.clean_pod_policy, pods):
            log.info(
                "%s/%s: finished, cleaning up pod %s", namespace, name, pod["metadata"]["name"]
            )
            await kube.delete_pod(namespace, pod["metadata"]["name"], pod["metadata"]["uid"])

    new_status = _dump(status)
    if previous is None or new_status != _dump(previous) or not job.get("status"):
        await kube.replace_status(job, new_status)
        if previous is None or previous.state != status.state:
            log.info("%s/%s: %s", namespace, name, status.state)
    for event in events:
        try:
            await kube.post_event(job, event)
        except Exception as error:  # noqa: BLE001 - an event lost is not worth failing the pass
            log.warning(
                "could not post event %s for %s/%s: %s", event.reason, namespace, name, error
            )
    return status.state
