"""A job's spec, parsed, compiled and checked once per generation: the one path from a
TensorFlowJob's spec to the replica specs its pods are built from, shared by the operator, the
`compile` command and the benchmark. What the schema could not check becomes a Problem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tfjob_operator.api.v1alpha1 import (
    MPISpec,
    ReplicaSpecs,
    ReplicaType,
    TensorFlowJobSpec,
)
from tfjob_operator.settings import OperatorSettings

from .builders import (
    requests_gpus,
)
from .estimator import compile_replica_specs, effective_mpi
from .gang import gang_members
from .observed import Problem


@dataclass(frozen=True)
class CompiledJob:
    """A job's spec, parsed and compiled into replica specs once per generation, or the reason
    it cannot be."""

    spec: TensorFlowJobSpec | None = None
    replica_specs: ReplicaSpecs | None = None
    mpi: MPISpec | None = None
    problem: Problem | None = None


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


def check_min_available(replica_specs: ReplicaSpecs, spec: TensorFlowJobSpec) -> None:
    """More pods that must start together than start together can never be."""
    policy = spec.run_policy.scheduling_policy if spec.run_policy else None
    members = len(gang_members("job", replica_specs))
    if policy is not None and policy.min_available and policy.min_available > members:
        raise ValueError(
            f"spec.runPolicy.schedulingPolicy.minAvailable: {policy.min_available} is more than "
            f"the {members} pods that start together (an Evaluator and an MPI launcher start "
            "on their own)"
        )


def check_mpi_workers(replica_specs: ReplicaSpecs, mpi: MPISpec | None) -> None:
    """An MPI launcher starts over SSH on its workers: without any it would never start."""
    workers = dict(replica_specs.items()).get(ReplicaType.WORKER)
    if mpi is not None and (workers is None or workers.replicas < 1):
        raise ValueError(
            "spec.tfReplicaSpecs.Worker: an MPI job needs at least one Worker, where its "
            "launcher's mpirun starts the ranks"
        )


def with_priority_class(replica_specs: ReplicaSpecs, spec: TensorFlowJobSpec) -> ReplicaSpecs:
    """runPolicy.schedulingPolicy.priorityClass, for the pod templates that name none."""
    policy = spec.run_policy.scheduling_policy if spec.run_policy else None
    if policy is None or not policy.priority_class:
        return replica_specs
    raw = replica_specs.model_dump(by_alias=True, exclude_none=True, mode="json")
    for replica in raw.values():
        replica["template"].setdefault("spec", {}).setdefault(
            "priorityClassName", policy.priority_class
        )
    return ReplicaSpecs.model_validate(raw)


def compile_job(raw_spec: dict[str, Any] | None, settings: OperatorSettings) -> CompiledJob:
    """Parse and compile a job's spec; what the schema could not check becomes a Problem."""
    spec: TensorFlowJobSpec | None = None
    try:
        spec = TensorFlowJobSpec.model_validate(raw_spec or {})
        replica_specs = with_priority_class(compile_replica_specs(spec, settings), spec)
        check_node_pools(replica_specs, spec.node_pool, settings)
        check_min_available(replica_specs, spec)
        mpi = effective_mpi(spec)
        check_mpi_workers(replica_specs, mpi)
    except ValidationError as error:
        return CompiledJob(spec, problem=Problem("InvalidSpec", describe_validation_error(error)))
    except ValueError as error:
        return CompiledJob(spec, problem=Problem("InvalidSpec", str(error)))
    except Exception as error:  # noqa: BLE001 - a spec nothing foresaw: fail it, never retry it
        return CompiledJob(spec, problem=cannot_build(error))
    return CompiledJob(spec, replica_specs, mpi)


def cannot_build(error: Exception) -> Problem:
    """A spec the schema and the checks let through, that compiling or building still could not
    take: the job fails saying so (a retry would meet the same spec), never retried for ever."""
    return Problem(
        "InvalidSpec",
        f"spec: the operator cannot build this job's pods ({type(error).__name__}: {error}); "
        "please report it with the job's spec",
    )
