"""The TensorFlowJob API, tfjob.dev/v1alpha1: the only source of the CRD (see ``crd.py``).

A job is written one of two ways, never both:

- the Kubeflow way, ``tfReplicaSpecs`` with a pod template per replica type, so a Kubeflow
  ``kubeflow.org/v1`` TFJob runs after changing only ``apiVersion`` and ``kind``;
- the estimator way, ``entryScript`` + ``scriptParams`` + ``distribution``, which
  ``estimator.compile_replica_specs`` turns into the same replica specs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "tfjob.dev"
VERSION = "v1alpha1"
KIND = "TensorFlowJob"
PLURAL = "tensorflowjobs"
SINGULAR = "tensorflowjob"
SHORT_NAMES = ("tfj",)
API_VERSION = f"{GROUP}/{VERSION}"

MAX_DNS_LABEL = 63


class Model(BaseModel):
    """Frozen, camelCase on the wire; unknown fields were already pruned by the API server."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )


class OpenModel(Model):
    """A Kubernetes object fragment: the fields we read are declared, the rest is kept as is."""

    model_config = ConfigDict(extra="allow")


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    validation = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


# ----- pod templates (declared where the operator reads them, open elsewhere) --------------


class ContainerPort(OpenModel):
    """A port the container listens on."""

    name: str | None = Field(None, description="Port name; `tfjob-port` sets TF_CONFIG's port.")
    container_port: int = Field(ge=1, le=65535, description="Port number in the container.")


# Names the operator gives what it adds to a job's pods; a template that used one would replace
# the operator's (a volume named tfjob-ssh once took the place of an MPI job's key) or clash
# with it. TF_CONFIG is the operator's in every pod of a distributed job.
RESERVED_VOLUMES = ("tfjob-ssh", "tfjob-mpi-hostfile", "tfjob-checkpoint")
RESERVED_ENV = "TF_CONFIG"
# In the estimator form the operator adds more (shipped source, pipPackages): every tfjob- name
# of volumes and containers is its own there, and so are the package index's variables.
RESERVED_PREFIX = "tfjob-"
RESERVED_ENV_PREFIX = "TFJOB_PIP_"
# Bounds the CEL rules over these lists need (the API server refuses a CRD whose rules could
# cost too much); far above what a training pod has.
MAX_CONTAINERS = 64
MAX_VOLUMES = 256
_RESERVED_VOLUMES_CEL = "[" + ", ".join(f"'{name}'" for name in RESERVED_VOLUMES) + "]"


class EnvVar(OpenModel):
    """An environment variable (`value` or `valueFrom`, as in a Pod)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"self.name != '{RESERVED_ENV}'",
                    f"{RESERVED_ENV} is the operator's: it writes each pod's own (remove it "
                    "from the template)",
                    ".name",
                )
            ]
        }
    )

    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(None, description="Literal value.")

    @field_validator("name")
    @classmethod
    def _not_the_operators(cls, name: str) -> str:
        if name == RESERVED_ENV:
            raise ValueError(
                f"{RESERVED_ENV} is the operator's: it writes each pod's own (remove it from "
                "the template)"
            )
        return name


class InitContainer(OpenModel):
    """An init container, as in a Pod (any Container field)."""

    name: str = Field(min_length=1, max_length=63, description="Container name.")


class Volume(OpenModel):
    """A volume of the pod, as in a Pod (any volume source)."""

    host_path: dict[str, Any] | None = Field(
        None,
        description="A directory of the node, as in a Pod (a cluster may refuse it).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    name: str = Field(
        min_length=1, max_length=63, description="Volume name; tfjob- names are the operator's."
    )


Quantity = Annotated[
    str,
    BeforeValidator(lambda value: str(value) if isinstance(value, int | float) else value),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]
"""A resource quantity: `8`, `"500m"`, `"16Gi"` (kept as the string Kubernetes prints)."""


# Lists keyed by name, as in a Pod: the API server refuses two items of one name at apply.
_BY_NAME = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class ResourceClaim(OpenModel):
    """A claim of the pod's `spec.resourceClaims` that the container uses."""

    name: str = Field(min_length=1, description="An entry of spec.resourceClaims.")


class ResourceRequirements(OpenModel):
    """Compute resources, as in a Pod: `nvidia.com/gpu` in limits requests GPUs."""

    limits: dict[str, Quantity] | None = Field(
        None, description="Maximum resources, for example `nvidia.com/gpu: 8`."
    )
    requests: dict[str, Quantity] | None = Field(
        None, description="Minimum resources the scheduler reserves."
    )
    claims: list[ResourceClaim] | None = Field(
        None,
        description="Dynamic Resource Allocation: the pod's resourceClaims it uses.",
        json_schema_extra=_BY_NAME,
    )


_ID = Annotated[int, Field(ge=0, le=2147483647)]


class SecurityContext(OpenModel):
    """A container's security settings, as in a Pod: the user the operator must know of."""

    run_as_user: _ID | None = Field(None, description="User ID.")
    run_as_group: _ID | None = Field(None, description="Primary group ID.")
    run_as_non_root: bool | None = Field(None, description="Refuse to start as root.")


class PodSecurityContext(SecurityContext):
    """The pod's security settings, as in a Pod."""

    fs_group: _ID | None = Field(None, description="Volumes' group ID.")


class Container(OpenModel):
    """A container of the pod template; any other Container field is accepted as in a Pod."""

    name: str = Field(min_length=1, description="Container name; TF_CONFIG goes to `tensorflow`.")
    image: str | None = Field(None, description="Container image.")
    command: list[str] | None = Field(None, description="Entrypoint array.")
    args: list[str] | None = Field(None, description="Arguments to the entrypoint.")
    env: list[EnvVar] | None = Field(
        None, description="Environment variables.", json_schema_extra=_BY_NAME
    )
    ports: list[ContainerPort] | None = Field(None, description="Ports to expose.")
    resources: ResourceRequirements | None = Field(None, description="Compute resources.")
    security_context: SecurityContext | None = Field(None, description="Security settings.")


class ImageContainer(Container):
    """A container of a whole pod template: as in a Pod, it must name its image."""

    image: str = Field(min_length=1, description="Container image (required, as in a Pod).")  # type: ignore[assignment]


class Toleration(OpenModel):
    """A toleration, as in a Pod."""

    key: str | None = Field(None, description="Taint key the toleration applies to.")


_POD_SPEC_RULES = [
    _cel(
        "!has(self.ephemeralContainers)",
        "a pod template cannot have ephemeralContainers (kubectl debug adds them to a running pod)",
        ".ephemeralContainers",
    ),
    _cel(
        f"!has(self.volumes) || self.volumes.all(v, !(v.name in {_RESERVED_VOLUMES_CEL}))",
        f"volume names {', '.join(RESERVED_VOLUMES)} are the operator's (an MPI job's key and "
        "hostfile, spec.checkpoint's claim): name the volume otherwise",
        ".volumes",
    ),
]
_ESTIMATOR_RULES = [
    *_POD_SPEC_RULES,
    _cel(
        f"!has(self.volumes) || self.volumes.all(v, !v.name.startsWith('{RESERVED_PREFIX}'))",
        f"volume names starting {RESERVED_PREFIX} are the operator's (shipped source, "
        "pipPackages, an MPI job's key, checkpoints): name the volume otherwise",
        ".volumes",
    ),
    _cel(
        "!has(self.initContainers) || "
        f"self.initContainers.all(c, !c.name.startsWith('{RESERVED_PREFIX}'))",
        f"init container names starting {RESERVED_PREFIX} are the operator's (it unpacks "
        "shipped source and installs pipPackages in them): name the container otherwise",
        ".initContainers",
    ),
    _cel(
        f"!has(self.containers) || self.containers.all(c, !c.name.startsWith('{RESERVED_PREFIX}'))",
        f"container names starting {RESERVED_PREFIX} are the operator's: name the container "
        "otherwise",
        ".containers",
    ),
]


def _reserved(kind: str, names: list[str], reserved: Callable[[str], bool]) -> None:
    for name in names:
        if reserved(name):
            raise ValueError(f"{kind} name {name!r} is the operator's: name it otherwise")


class PodSpec(OpenModel):
    """A Pod spec; any other PodSpec field is accepted and passed to the pods."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _POD_SPEC_RULES})

    containers: list[ImageContainer] = Field(
        min_length=1,
        description="Containers; the one named `tensorflow` (or the first) trains.",
        json_schema_extra=_BY_NAME,
    )
    restart_policy: str | None = Field(
        None,
        description="Ignored: the replica's restartPolicy decides (as in Kubeflow's TFJob).",
    )
    node_selector: dict[str, str] | None = Field(None, description="Node labels to match.")
    tolerations: list[Toleration] | None = Field(None, description="Taints to tolerate.")
    security_context: PodSecurityContext | None = Field(None, description="Security settings.")
    service_account_name: str | None = Field(
        None, description="The pods' ServiceAccount (default: the namespace's `default`)."
    )
    service_account: str | None = Field(
        None, description="Deprecated alias of serviceAccountName, as in a Pod."
    )
    host_network: bool | None = Field(None, description="Use the node's network, as in a Pod.")
    host_pid: bool | None = Field(
        None, alias="hostPID", description="Use the node's PID namespace, as in a Pod."
    )
    host_ipc: bool | None = Field(
        None, alias="hostIPC", description="Use the node's IPC namespace, as in a Pod."
    )
    init_containers: list[InitContainer] | None = Field(
        None,
        max_length=MAX_CONTAINERS,
        description="Init containers, as in a Pod.",
        json_schema_extra=_BY_NAME,
    )
    volumes: list[Volume] | None = Field(
        None,
        max_length=MAX_VOLUMES,
        description=f"Volumes, as in a Pod; {', '.join(RESERVED_VOLUMES)} are the operator's.",
        json_schema_extra=_BY_NAME,
    )
    ephemeral_containers: list[dict[str, Any]] | None = Field(
        None,
        description="Refused: only a running pod gets them.",
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )

    @model_validator(mode="after")
    def _claims_the_pod_names(self) -> PodSpec:
        """A container's claim must be one of the pod's resourceClaims, or the API server
        refuses every pod: said here, on the job, before any pod is made."""
        declared = {
            claim.get("name")
            for claim in (self.model_extra or {}).get("resourceClaims") or []
            if isinstance(claim, dict)
        }
        for i, container in enumerate(self.containers or []):
            claims = container.resources.claims if container.resources else None
            for j, claim in enumerate(claims or []):
                if claim.name not in declared:
                    raise ValueError(
                        f"containers[{i}].resources.claims[{j}].name: {claim.name!r} is not "
                        "one of the pod's resourceClaims"
                    )
        return self

    @field_validator("volumes")
    @classmethod
    def _volumes_not_the_operators(cls, volumes: list[Volume] | None) -> list[Volume] | None:
        _reserved("volume", [v.name for v in volumes or []], RESERVED_VOLUMES.__contains__)
        return volumes

    @field_validator("ephemeral_containers")
    @classmethod
    def _no_ephemeral_containers(cls, value: list[dict[str, Any]] | None) -> None:
        """The CRD refuses them at apply; a job stored some other way is refused here."""
        if value is not None:
            raise ValueError(
                "a pod template cannot have ephemeralContainers (kubectl debug adds them to a "
                "running pod)"
            )


class ObjectMeta(OpenModel):
    """Labels and annotations copied onto every pod of the replica."""

    labels: dict[str, str] | None = Field(None, description="Labels added to the pods.")
    annotations: dict[str, str] | None = Field(None, description="Annotations added to the pods.")


class PodTemplateSpec(OpenModel):
    """The pod template of a replica type (same shape as a Deployment's template)."""

    metadata: ObjectMeta | None = Field(None, description="Pod labels and annotations.")
    spec: PodSpec = Field(description="Pod spec.")


class EstimatorEnvVar(EnvVar):
    """An environment variable of an estimator-style job's container."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"self.name != '{RESERVED_ENV}' && "
                    f"!self.name.startsWith('{RESERVED_ENV_PREFIX}')",
                    f"{RESERVED_ENV} and variables starting {RESERVED_ENV_PREFIX} are the "
                    "operator's (each pod's TF_CONFIG; the package index of pipPackages: set "
                    "spec.packageIndex instead)",
                    ".name",
                )
            ]
        }
    )


class EstimatorContainer(Container):
    """A container of an estimator-style job's template, merged by name."""

    name: str = Field(
        min_length=1,
        max_length=63,
        description="Container name; the trainer is `tensorflow`, tfjob- names the operator's.",
    )
    env: list[EstimatorEnvVar] | None = Field(  # type: ignore[assignment]
        None, description="Environment variables.", json_schema_extra=_BY_NAME
    )


class PartialPodSpec(PodSpec):
    """A pod spec fragment merged into every replica of an estimator-style job."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _ESTIMATOR_RULES})

    containers: list[EstimatorContainer] | None = Field(  # type: ignore[assignment]
        None,
        max_length=MAX_CONTAINERS,
        description=(
            "Merged by name into the generated containers (the trainer container is named "
            "`tensorflow`): add env, volumeMounts, resources..."
        ),
        json_schema_extra=_BY_NAME,
    )

    @model_validator(mode="after")
    def _names_not_the_operators(self) -> PartialPodSpec:
        """What the CRD refuses at apply, for a job stored some other way."""
        operators = lambda name: name.startswith(RESERVED_PREFIX)  # noqa: E731
        _reserved("volume", [v.name for v in self.volumes or []], operators)
        _reserved("init container", [c.name for c in self.init_containers or []], operators)
        _reserved("container", [c.name for c in self.containers or []], operators)
        _reserved(
            "variable",
            [e.name for c in self.containers or [] for e in c.env or []],
            lambda name: name.startswith(RESERVED_ENV_PREFIX),
        )
        return self


class PartialPodTemplateSpec(OpenModel):
    """Pod details for an estimator-style job: volumes, env, resources, node selection..."""

    metadata: ObjectMeta | None = Field(None, description="Pod labels and annotations.")
    spec: PartialPodSpec | None = Field(None, description="Pod spec fragment.")


# ----- Kubeflow-style replica specs ---------------------------------------------------------


class ReplicaType(StrEnum):
    CHIEF = "Chief"
    MASTER = "Master"
    WORKER = "Worker"
    PS = "PS"
    EVALUATOR = "Evaluator"
    LAUNCHER = "Launcher"


class RestartPolicy(StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"
    EXIT_CODE = "ExitCode"


class ReplicaSpec(Model):
    """How many pods of one replica type to run, and how."""

    replicas: int = Field(1, ge=0, le=10000, description="Number of pods of this type (default 1).")
    restart_policy: RestartPolicy = Field(
        RestartPolicy.NEVER,
        description=(
            "What a failure of one of these pods does. Never (default): a failed pod fails the "
            "job. OnFailure / Always: the kubelet restarts the container in place, and a pod "
            "that fails as a whole (evicted, its node lost) is replaced by the operator. "
            "ExitCode: exit codes 1-127 are permanent and fail the job; 128-255 (137 after a "
            "preemption or OOM kill, 143 after SIGTERM) and a pod that failed without an exit "
            "code are retried: the operator replaces the pod, or restarts the whole job (see "
            "runPolicy.restartScope). Every restart counts toward runPolicy.backoffLimit. "
            "Whatever the policy, a pod the cluster took (evicted, preempted, deleted by "
            "someone other than the operator, lost with its node) is a disruption, not a "
            "failure: it is restarted, counted toward runPolicy.disruptionLimit instead."
        ),
    )
    template: PodTemplateSpec = Field(description="Pod template of this replica type.")


def _single(replica_type: str) -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [
            _cel(
                "!has(self.replicas) || self.replicas <= 1",
                f"{replica_type} must have at most 1 replica",
                ".replicas",
            )
        ]
    }


class ReplicaSpecs(Model):
    """Replica specs keyed by replica type, as in Kubeflow's TFJob."""

    model_config = ConfigDict(
        json_schema_extra={
            "minProperties": 1,
            "x-kubernetes-validations": [
                _cel(
                    "!(has(self.Chief) && has(self.Master))",
                    "set Chief or Master, not both: a job has one chief",
                ),
                _cel(
                    "!has(self.Launcher) || (has(self.Worker) && !has(self.Chief) && "
                    "!has(self.Master) && !has(self.PS) && !has(self.Evaluator))",
                    "an MPI job (with a Launcher) has Workers and no Chief, Master, PS or "
                    "Evaluator",
                    ".Launcher",
                ),
                _cel(
                    " || ".join(
                        f"(has(self.{t}) && (!has(self.{t}.replicas) || self.{t}.replicas > 0))"
                        for t in ("Chief", "Master", "Worker")
                    ),
                    "a job needs a Chief, Master or Worker with at least one replica: "
                    "one of them decides when the job succeeds",
                ),
                _cel(
                    "!has(self.PS) || (has(self.Worker) && "
                    "(!has(self.Worker.replicas) || self.Worker.replicas > 0))",
                    "a job with PS replicas needs at least one Worker",
                    ".PS",
                ),
            ],
        }
    )

    @model_validator(mode="before")
    @classmethod
    def _known_replica_types(cls, data: Any) -> Any:
        """A key the API server would prune (`WORKER`, `worker`) is refused by name, so the
        compile command never prints a job without its pods."""
        if isinstance(data, dict):
            known = [t.value for t in ReplicaType]
            for key in data:
                if key not in known:
                    raise ValueError(
                        f"unknown replica type {key!r}: the types are {', '.join(known)}, "
                        "spelled exactly so"
                    )
        return data

    chief: ReplicaSpec | None = Field(
        None,
        alias="Chief",
        description="The chief: coordinates training and decides success (at most 1).",
        json_schema_extra=_single("Chief"),
    )
    master: ReplicaSpec | None = Field(
        None,
        alias="Master",
        description="Legacy name of the chief (at most 1); TF_CONFIG calls it `master`.",
        json_schema_extra=_single("Master"),
    )
    worker: ReplicaSpec | None = Field(None, alias="Worker", description="Training workers.")
    ps: ReplicaSpec | None = Field(None, alias="PS", description="Parameter servers.")
    evaluator: ReplicaSpec | None = Field(
        None,
        alias="Evaluator",
        description=(
            "A side-car evaluator (at most 1). It is kept out of the training tasks' "
            "TF_CONFIG cluster, since a parameter-server chief waits forever for it."
        ),
        json_schema_extra=_single("Evaluator"),
    )

    launcher: ReplicaSpec | None = Field(
        None,
        alias="Launcher",
        description=(
            "MPI jobs (with spec.mpi): the pod that runs mpirun/horovodrun against the "
            "workers, and whose exit decides the job (exactly 1)."
        ),
        json_schema_extra=_single("Launcher"),
    )

    def items(self) -> list[tuple[ReplicaType, ReplicaSpec]]:
        """Present replica types in a stable order."""
        found = []
        for replica_type in ReplicaType:
            spec = getattr(self, replica_type.name.lower())
            if spec is not None:
                found.append((replica_type, spec))
        return found


# ----- run policy -----------------------------------------------------------------------------


DEFAULT_BACKOFF_LIMIT = 6
DEFAULT_DISRUPTION_LIMIT = 10


class RestartScope(StrEnum):
    POD = "Pod"
    JOB = "Job"


class CleanPodPolicy(StrEnum):
    ALL = "All"
    RUNNING = "Running"
    NONE = "None"


class SchedulingPolicy(Model):
    """How the job's pods are scheduled (Kubeflow's fields; any other is refused)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.minResources)",
                    "spec.runPolicy.schedulingPolicy.minResources is not supported: the gang "
                    "(a PodGroup) and Kueue count the pods' own resource requests; drop it",
                    ".minResources",
                )
            ]
        }
    )

    min_available: int | None = Field(
        None,
        ge=1,
        description=(
            "Pods that must be placed together before any starts (the gang's minCount; default "
            "all pods but an Evaluator and an MPI launcher). Acted on where the cluster serves "
            "Kubernetes' PodGroup API (1.36+ with gang scheduling on) and the operator's "
            "gang_scheduling setting is on; elsewhere pods are scheduled one by one, as the "
            "operator's log says at startup. More than the job's pods fails the job."
        ),
    )
    queue: str | None = Field(
        None,
        max_length=63,
        # A LocalQueue's name that is also a label value: the pods carry it as one.
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "A Kueue LocalQueue in the job's namespace (the label kueue.x-k8s.io/queue-name on "
            "the job says the same). The pods of each attempt (but an MPI launcher) form a "
            "Kueue pod group: Kueue holds them, gated, until the whole group fits its "
            "ClusterQueue's quota, in the queue's order. Needs Kueue with its pod integration "
            "for the namespace; without it the pods run at once. A job naming a queue fails "
            "when the operator's queueing setting is off."
        ),
    )
    min_resources: dict[str, Quantity] | None = Field(
        None,
        description=(
            "Kubeflow's (for Volcano): refused at apply. Kubernetes' gang scheduling and Kueue "
            "count the pods' own resource requests; it is declared only to say so."
        ),
    )
    priority_class: str | None = Field(
        None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "PriorityClass of the pods whose template names none. A class that does not "
            "exist fails the job when its first pod is refused."
        ),
    )
    schedule_timeout_seconds: int | None = Field(
        None,
        ge=1,
        description=(
            "Fail the job (reason ScheduleTimeoutExceeded, with the scheduler's words) when "
            "its pods are not all running this many seconds after status.startTime, or after "
            "a restart began; its pods are then stopped whatever cleanPodPolicy says (All "
            "still deletes every pod). Unset: a job waits for its pods as long as it takes."
        ),
    )


class ManagedBy(StrEnum):
    OPERATOR = "tfjob.dev/operator"
    MULTIKUEUE = "kueue.x-k8s.io/multikueue"


class RunPolicy(Model):
    """What happens around the training: cleanup, limits, suspension."""

    clean_pod_policy: CleanPodPolicy = Field(
        CleanPodPolicy.RUNNING,
        description=(
            "Pods deleted once the job finished: Running (default; stops parameter servers and "
            "workers still running), All, or None (keep every pod)."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        description=(
            "Delete the job (and with it its pods and Service) this many seconds after it "
            "finished, counted from status.completionTime, so an operator restart does not "
            "reset it. Unset: the finished job stays until deleted."
        ),
    )
    active_deadline_seconds: int | None = Field(
        None,
        ge=1,
        description=(
            "Fail the job (reason DeadlineExceeded) once it has been active this many seconds, "
            "counted from status.startTime (which a resume after suspend resets), and stop its "
            "pods that still run, whatever cleanPodPolicy says (All still deletes every pod)."
        ),
    )
    backoff_limit: int | None = Field(
        None,
        ge=0,
        description=(
            f"Restarts allowed before the job fails with reason BackoffLimitExceeded (default "
            f"{DEFAULT_BACKOFF_LIMIT}, as for a batch Job). Counted: every container restart the "
            "kubelet makes under OnFailure / Always, every pod the operator replaces, every "
            "restart of the whole job, each counted once. The counts are kept on the status "
            "(replicaStatuses.*.restarts), so an operator restart forgets none. Disruptions "
            "(see disruptionLimit) do not count."
        ),
    )
    disruption_limit: int | None = Field(
        None,
        ge=0,
        description=(
            "Restarts that disruptions may cause before the job fails with reason "
            f"DisruptionLimitExceeded (default {DEFAULT_DISRUPTION_LIMIT}). A disruption is a "
            "pod the cluster took, not one that failed: evicted (kubectl drain, the Eviction "
            "API, node pressure), preempted by kube-scheduler or Kueue, deleted by someone "
            "other than the operator, or lost with its node (its DisruptionTarget condition "
            "says which). As with a batch Job's podFailurePolicy on DisruptionTarget, it does "
            "not spend backoffLimit; it is counted in replicaStatuses.*.disruptions, so a job "
            "on a node that keeps failing still ends."
        ),
    )
    restart_scope: RestartScope | None = Field(
        None,
        description=(
            "What a retried failure restarts. Pod: the failed pod alone, under its own name. "
            "Job: every pod of the job, together, as a new attempt (status.attempt and the "
            "pods' tfjob.dev/attempt label), since a worker of a collective "
            "(MultiWorkerMirrored, Horovod/MPI) cannot rejoin peers that kept running. "
            "Default: Job for MPI jobs and for jobs without PS whose Chief and Workers are "
            "more than one pod; Pod otherwise (parameter-server jobs, single-pod jobs). An "
            "Evaluator is always replaced alone. In a job with parameter servers, a PS or "
            "Chief that fails or is taken restarts the whole job under either scope: the "
            "variables live on the parameter servers and the coordinator on the chief, so "
            "neither can be replaced alone."
        ),
    )
    suspend: bool = Field(
        False,
        description=(
            "true: the job runs no pods. A new job creates none; a running job's pods are "
            "deleted (whatever cleanPodPolicy says), it shows Suspended, its startTime is "
            "cleared and activeDeadlineSeconds does not run. false again: the pods are created "
            "anew and startTime restarts (as for Kubeflow's and batch Jobs). A finished job "
            "stays finished. Kueue uses it to admit jobs."
        ),
    )
    managed_by: ManagedBy | None = Field(
        None,
        description=(
            "Which controller acts on the job: tfjob.dev/operator (this operator, the "
            "default) or kueue.x-k8s.io/multikueue (Kueue's MultiKueue runs it on a worker "
            "cluster and mirrors its status back; this operator leaves it untouched). Cannot "
            "change once the job exists."
        ),
    )
    scheduling_policy: SchedulingPolicy | None = Field(
        None, description="How the pods are scheduled, and how long that may take."
    )


class SuccessPolicy(StrEnum):
    DEFAULT = ""
    ALL_WORKERS = "AllWorkers"


# ----- estimator-style fields -----------------------------------------------------------------


class Backend(StrEnum):
    MULTI_WORKER_MIRRORED = "multiWorkerMirrored"
    PARAMETER_SERVER = "parameterServer"
    MPI = "mpi"


SOURCE_MOUNT = "/workspace"


class SourceDirectory(Model):
    """A local directory packed by the client (`tfjob-operator submit --source DIR`)."""

    config_map: str = Field(
        min_length=1,
        max_length=253,
        description=(
            "The ConfigMap that holds the packed directory (binaryData `source.tar.gz`). The "
            "client creates it once the job exists, labelled tfjob.dev/job-name=<job> and "
            "owned by the job; the operator creates no pod before it is there."
        ),
    )


class SourceVolume(Model):
    """Code on a PersistentVolumeClaim, mounted read-only."""

    claim_name: str = Field(min_length=1, max_length=253, description="The claim's name.")
    sub_path: str | None = Field(
        None, description="The directory within the volume that holds the code (default: all)."
    )


class Source(Model):
    """Where an estimator-style job's code comes from; absent: the image's working directory."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.directory) != has(self.persistentVolumeClaim)",
                    "set exactly one of spec.source.directory or spec.source.persistentVolumeClaim",
                )
            ]
        }
    )

    directory: SourceDirectory | None = Field(
        None,
        description=(
            f"A directory shipped with the job: unpacked into {SOURCE_MOUNT} (the pods' working "
            "directory) by an init container of the trainer's own image before it starts."
        ),
    )
    persistent_volume_claim: SourceVolume | None = Field(
        None,
        description=f"A volume with the code, mounted read-only at {SOURCE_MOUNT}, the pods' "
        "working directory.",
    )


CHECKPOINT_MOUNT = "/checkpoint"
CHECKPOINT_DIR_ENV = "TFJOB_CHECKPOINT_DIR"


class CheckpointVolume(Model):
    """The claim a job's checkpoints live on."""

    claim_name: str = Field(min_length=1, max_length=253, description="The claim's name.")


class Checkpoint(Model):
    """Where a job keeps the progress it resumes from when it restarts."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.mountPath) || (self.mountPath.startsWith('/') "
                    f"&& self.mountPath != '/' && self.mountPath != '{SOURCE_MOUNT}' "
                    f"&& !self.mountPath.startsWith('{SOURCE_MOUNT}/'))",
                    "spec.checkpoint.mountPath must be an absolute path other than / and "
                    f"outside {SOURCE_MOUNT} (the code's directory)",
                    ".mountPath",
                )
            ]
        }
    )

    persistent_volume_claim: CheckpointVolume = Field(
        description=(
            "The claim mounted into every pod of the job (ReadWriteMany when the pods may land "
            "on more than one node). It must be writable by the trainer's user (uid 1000 in "
            "the trainer images): a pod fsGroup in spec.template, or a volume prepared so. "
            "Jobs may share one claim: each writes to a directory of its own name."
        )
    )
    mount_path: str = Field(
        CHECKPOINT_MOUNT,
        max_length=512,
        description=(
            f"Where the claim is mounted in the trainer container (default {CHECKPOINT_MOUNT}). "
            f"The job's directory, <mountPath>/<job name>, is given to the script as "
            f"{CHECKPOINT_DIR_ENV}: the trainer images' train.py backs up to it every epoch "
            "and on SIGTERM, and resumes from it when the job restarts."
        ),
    )


# An index URL with credentials in it (https://user:token@host/...) would show them to anyone
# who reads the job, and in the install's log and the job's status: they go in a Secret.
INDEX_URL_PATTERN = r"^https?://[^\s]+$"
INDEX_USERINFO = r"^https?://[^/?#]*@"
INDEX_USERINFO_MESSAGE = (
    "must not carry credentials (user:token@host): put them in a Secret of the job's "
    "namespace with keys username and password, and name it in credentialsSecret"
)


class PackageIndex(Model):
    """A Python package index that pipPackages install from, in place of PyPI."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"!self.url.matches('{INDEX_USERINFO}')",
                    f"packageIndex.url {INDEX_USERINFO_MESSAGE}",
                    ".url",
                )
            ]
        }
    )

    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=INDEX_URL_PATTERN,
        description=(
            "The index's simple API, e.g. `https://pypi.example.com/simple`, without "
            "credentials (credentialsSecret has them). An http:// URL is trusted as written "
            "(pip's --trusted-host): use it only inside the cluster."
        ),
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        if re.match(INDEX_USERINFO, url):
            raise ValueError(INDEX_USERINFO_MESSAGE)
        return url

    credentials_secret: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description=(
            "A Secret in the job's namespace with keys `username` and `password` (type "
            "kubernetes.io/basic-auth). They reach pip through the install's environment; pods "
            "wait, with the kubelet's reason on the job's status, while it is missing."
        ),
    )


class Distribution(Model):
    """How an estimator-style job is spread over pods (absent: a single pod)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.backend == 'parameterServer' || !has(self.parameterServerCount)",
                    "parameterServerCount applies only to backend parameterServer",
                    ".parameterServerCount",
                ),
                _cel(
                    "self.backend == 'mpi' || "
                    "(!has(self.nodeCount) && !has(self.processCountPerNode))",
                    "nodeCount and processCountPerNode apply only to backend mpi",
                ),
                _cel(
                    "self.backend != 'mpi' || !has(self.workerCount)",
                    "backend mpi counts nodeCount (worker pods) and processCountPerNode, not "
                    "workerCount",
                    ".workerCount",
                ),
            ]
        }
    )

    backend: Backend = Field(
        description=(
            "multiWorkerMirrored (tf.distribute.MultiWorkerMirroredStrategy: workerCount "
            "workers), parameterServer (ParameterServerStrategy: a chief, workerCount "
            "workers and parameterServerCount parameter servers) or mpi (Horovod over MPI: "
            "nodeCount worker pods running processCountPerNode processes each, started by a "
            "launcher)."
        )
    )
    worker_count: int = Field(1, ge=1, le=10000, description="Number of workers (default 1).")
    parameter_server_count: int | None = Field(
        None, ge=1, le=1000, description="Number of parameter servers (default 1)."
    )
    node_count: int | None = Field(
        None, ge=1, le=10000, description="mpi: number of worker pods (nodes; default 1)."
    )
    process_count_per_node: int | None = Field(
        None,
        ge=1,
        le=64,
        description=(
            "mpi: processes per worker pod (MPI slots; default 1). With useGpu, each worker "
            "gets this many GPUs, one per process."
        ),
    )


class MPIImplementation(StrEnum):
    OPEN_MPI = "OpenMPI"
    INTEL = "Intel"
    MPICH = "MPICH"


class LauncherCreation(StrEnum):
    WAIT_FOR_WORKERS_READY = "WaitForWorkersReady"
    AT_STARTUP = "AtStartup"


class MPISpec(Model):
    """How the launcher reaches the workers of an MPI (Horovod) job."""

    implementation: MPIImplementation = Field(
        MPIImplementation.OPEN_MPI,
        description=(
            "MPI of the image: OpenMPI (default), Intel or MPICH; it sets the hostfile format "
            "and the launcher's environment."
        ),
    )
    slots_per_worker: int = Field(
        1, ge=1, le=64, description="Processes (MPI slots) per worker pod (default 1)."
    )
    launcher_creation: LauncherCreation = Field(
        LauncherCreation.WAIT_FOR_WORKERS_READY,
        description=(
            "WaitForWorkersReady (default): create the launcher once every worker is Ready, so "
            "mpirun never meets a worker that cannot accept SSH yet. AtStartup: at once."
        ),
    )
    ssh_port: int = Field(
        2222, ge=1, le=65535, description="Port the workers' sshd listens on (default 2222)."
    )


ScriptParamValue = str | int | float | bool | None


def _open_scalar_map(schema: dict[str, Any]) -> None:
    """A map of scalars of any JSON type, which a structural schema cannot say: leave it open."""
    schema.pop("anyOf", None)
    schema.update(
        {"type": "object", "maxProperties": 128, "x-kubernetes-preserve-unknown-fields": True}
    )


_MANAGED_BY = (
    "(has({o}.runPolicy) && has({o}.runPolicy.managedBy) ? {o}.runPolicy.managedBy : "
    f"'{ManagedBy.OPERATOR.value}')"
)


class TensorFlowJobSpec(Model):
    """The desired training job, in the Kubeflow form or in the estimator form."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.tfReplicaSpecs) != has(self.entryScript)",
                    "set exactly one of spec.tfReplicaSpecs (Kubeflow form) or "
                    "spec.entryScript (estimator form)",
                ),
                _cel(
                    "!has(self.tfReplicaSpecs) || !(has(self.image) || has(self.scriptParams) "
                    "|| has(self.arguments) || has(self.useGpu) || has(self.gpuCount) "
                    "|| has(self.distribution) "
                    "|| has(self.pipPackages) || has(self.packageIndex) "
                    "|| has(self.environmentVariables) || has(self.template) || has(self.source))",
                    "spec.tfReplicaSpecs cannot be combined with the estimator fields image, "
                    "scriptParams, arguments, useGpu, gpuCount, distribution, pipPackages, "
                    "packageIndex, environmentVariables, template, source: put them in the replica "
                    "templates",
                ),
                _cel(
                    "!has(self.packageIndex) || has(self.pipPackages)",
                    "spec.packageIndex names where spec.pipPackages come from: add pipPackages "
                    "or drop packageIndex",
                    ".packageIndex",
                ),
                _cel(
                    "!has(self.condaPackages)",
                    "spec.condaPackages is not supported: the trainer images have no conda; "
                    "list the packages in spec.pipPackages (most have the same name on PyPI)",
                    ".condaPackages",
                ),
                _cel(
                    "!has(self.pipPackages) || self.pipPackages.all(p, !p.startsWith('-'))",
                    "spec.pipPackages lists requirements (name, name==version, a URL or a path "
                    "in the source), not pip options: name the index in spec.packageIndex",
                    ".pipPackages",
                ),
                _cel(
                    "!has(self.gpuCount) || (has(self.useGpu) && self.useGpu)",
                    "spec.gpuCount needs spec.useGpu: true",
                    ".gpuCount",
                ),
                _cel(
                    "has(self.mpi) == (has(self.tfReplicaSpecs) && "
                    "has(self.tfReplicaSpecs.Launcher))",
                    "spec.mpi and a Launcher replica go together: an MPI job needs both",
                    ".mpi",
                ),
                _cel(
                    f"{_MANAGED_BY.format(o='self')} == {_MANAGED_BY.format(o='oldSelf')}",
                    "spec.runPolicy.managedBy cannot change once the job exists",
                    ".runPolicy.managedBy",
                ),
                _cel(
                    "!has(self.distribution) || self.distribution.backend != 'mpi' || "
                    "!has(self.gpuCount)",
                    "with backend mpi each worker gets processCountPerNode GPUs (one per "
                    "process): drop gpuCount",
                    ".distribution",
                ),
            ]
        }
    )

    # Kubeflow form
    tf_replica_specs: ReplicaSpecs | None = Field(
        None, description="Kubeflow form: a pod template per replica type."
    )
    run_policy: RunPolicy | None = Field(None, description="Cleanup, limits and suspension.")
    success_policy: SuccessPolicy = Field(
        SuccessPolicy.DEFAULT,
        description=(
            'When the job succeeds without a chief: "" (default) when worker 0 succeeds, '
            "AllWorkers when every worker succeeds. With a chief, the chief decides."
        ),
    )
    mpi: MPISpec | None = Field(
        None,
        description=(
            "Kubeflow form, MPI jobs: Launcher and Worker replicas plus how they connect. The "
            "operator adds an SSH key Secret, a hostfile ConfigMap and starts the launcher. "
            "The key is mounted at /etc/tfjob/ssh, mode 0600 for root; a pod whose "
            "securityContext names a non-root runAsUser gets it mode 0440 with that group "
            "(runAsGroup, else runAsUser) as fsGroup unless it sets one. Ranks start under "
            "sshd: they see only the variables the launcher's mpirun forwards (-x)."
        ),
    )
    node_pool: str | None = Field(
        None,
        max_length=63,
        description=(
            "Node pool of the pods that request GPUs, by name; the operator's settings map it "
            "to a node selector. Default: the operator's. Pods without GPUs go anywhere."
        ),
    )

    # Estimator form
    entry_script: str | None = Field(
        None, min_length=1, description="Estimator form: the script every replica runs."
    )
    script_params: dict[str, ScriptParamValue] | None = Field(
        None,
        description=(
            "Named parameters of the entry script, for example `--batch-size: 50`; a `true`, "
            "empty or null value passes the flag alone (`--no-cuda: ''`; client-side `kubectl "
            "apply` drops nulls, so write '' or true), `false` leaves it out. The API server "
            "keeps a map sorted by name, not in the order written: when order matters use "
            "spec.arguments. Both together: scriptParams, then arguments."
        ),
        # Values are scalars of any JSON type, which a structural schema cannot say; the
        # operator checks them (see TensorFlowJobSpec) and reports a bad one on the status.
        json_schema_extra=_open_scalar_map,
    )
    arguments: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None,
        max_length=256,
        description=(
            "The entry script's command line after its name, in order and as written, for "
            'example `["--model", "MobileNetV2", "--no-cuda", "data/"]`: strings, as a '
            "container's args. After spec.scriptParams' flags when both are set."
        ),
    )
    image: str | None = Field(
        None, description="Trainer image (default: the operator's, by useGpu)."
    )

    @field_validator("script_params", mode="before")
    @classmethod
    def _scalar_script_params(cls, value: Any) -> Any:
        """The schema leaves values open (no structural type says "any scalar"): check here."""
        for flag, item in (value or {}).items():
            if item is not None and not isinstance(item, str | int | float | bool):
                raise ValueError(
                    f"the value of {flag!r} must be a string, number, boolean or null, "
                    f"not {type(item).__name__}"
                )
        return value

    use_gpu: bool | None = Field(
        None, description="Give each worker GPUs (gpuCount, default 1) on a GPU node pool."
    )
    gpu_count: int | None = Field(
        None, ge=1, le=64, description="GPUs per worker pod when useGpu is true (default 1)."
    )
    pip_packages: list[Annotated[str, Field(min_length=1, max_length=512)]] | None = Field(
        None,
        max_length=64,
        description=(
            "Requirements pip installs before the script starts, in each pod that runs it, by an "
            "init container of the trainer's image: into a layer over the image's Python, so "
            "what the image has is not fetched again. From PyPI, spec.packageIndex or the "
            "operator's default index. A failed install fails the job with pip's last lines."
        ),
    )
    conda_packages: list[Annotated[str, Field(max_length=512)]] | None = Field(
        None,
        max_length=64,
        description=(
            "Not supported, and refused at apply (the trainer images have no conda): it is "
            "declared only to say so. Use pipPackages."
        ),
    )
    package_index: PackageIndex | None = Field(
        None,
        description=("Where pipPackages come from (default: the operator's setting, else PyPI)."),
    )
    environment_variables: dict[str, str] | None = Field(
        None,
        description=(
            "Environment variables of the trainer container; with backend mpi, the launcher's "
            f"mpirun forwards each to every rank. {RESERVED_ENV} and {RESERVED_ENV_PREFIX}* are "
            "the operator's."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"!('{RESERVED_ENV}' in self) && "
                    f"self.all(name, !name.startsWith('{RESERVED_ENV_PREFIX}'))",
                    f"{RESERVED_ENV} and variables starting {RESERVED_ENV_PREFIX} are the "
                    "operator's (each pod's TF_CONFIG; the package index of pipPackages: set "
                    "spec.packageIndex instead)",
                )
            ]
        },
    )

    @field_validator("environment_variables")
    @classmethod
    def _variables_not_the_operators(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        _reserved(
            "variable",
            list(value or {}),
            lambda name: name == RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIX),
        )
        return value

    distribution: Distribution | None = Field(
        None, description="How the training is distributed; absent for a single-node job."
    )
    template: PartialPodTemplateSpec | None = Field(
        None, description="Pod details merged into every replica: volumes, env, resources..."
    )
    source: Source | None = Field(
        None,
        description=(
            "Estimator form: where entryScript and its files come from. Absent: the image's "
            "working directory."
        ),
    )
    checkpoint: Checkpoint | None = Field(
        None,
        description=(
            "A volume for the job's checkpoints, mounted into every pod (either form), so that "
            "a job restarted after a failure or a disruption resumes where it was."
        ),
    )


class ConditionType(StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class Condition(Model):
    """One observation of the job's state, in Kubeflow's vocabulary."""

    type: ConditionType = Field(description="Created, Running, Restarting, Succeeded, Failed...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="Machine-readable reason, for example TFJobSucceeded.")
    message: str = Field(description="Human-readable explanation.")
    last_update_time: dt.datetime | None = Field(None, description="Last time it was set.")
    last_transition_time: dt.datetime | None = Field(
        None, description="Last time its status changed."
    )


class ReplicaStatus(Model):
    """Pods of one replica type, by phase."""

    active: int = Field(0, description="Pods Pending or Running.")
    succeeded: int = Field(0, description="Pods that succeeded.")
    failed: int = Field(0, description="Pods that failed.")
    restarts: int | None = Field(
        None,
        description=(
            "Restarts this type's failures caused so far (absent: none): containers the "
            "kubelet restarted, pods the operator replaced, and restarts of the whole job that "
            "a failure of this type began. What runPolicy.backoffLimit counts."
        ),
    )
    disruptions: int | None = Field(
        None,
        description=(
            "Restarts that disruptions of this type's pods caused so far (absent: none): a pod "
            "evicted, preempted, deleted by someone other than the operator or lost with its "
            "node, replaced or restarting the whole job. What runPolicy.disruptionLimit "
            "counts; backoffLimit does not."
        ),
    )
    container_restarts: int | None = Field(
        None,
        description=(
            "Container restarts the kubelet reports in this type's current pods (absent: "
            "none); the operator adds their growth to restarts."
        ),
    )
    completed_indexes: str | None = Field(
        None,
        description=(
            "The indexes of this type whose pod succeeded in the current attempt, as ranges "
            '("0,2-4"; absent: none), like a Kubernetes Job\'s. A success stands when its pod '
            "is removed before the job ends (the pod garbage collector removes ended pods past "
            "its threshold, 12,500 by default): the pod is not made again, and its absence "
            "restarts nothing. Succeeded counts them."
        ),
    )


RECONCILE_FAILURES_REPORTED = 3


class Settling(Model):
    """A collective's permanent failure waiting for its peers before it decides the job."""

    pod: str = Field(description="The pod whose failure came first.")
    failed_at: dt.datetime = Field(description="When that failure happened (or was first seen).")
    decide_at: dt.datetime = Field(
        description=(
            "When the job's verdict is taken if no peer shows by then that the failure was a "
            "consequence (a peer killed, evicted or deleted first): then the job restarts."
        )
    )


class PendingPod(Model):
    """A pod of the job that cannot start yet, and why."""

    pod: str = Field(description="The pod's name.")
    reason: str = Field(
        description="Unschedulable, ErrImagePull, CreateContainerConfigError..., NameInUse: "
        "an object that is not this job's holds the name of a pod (or of the job's Service or "
        "ConfigMap), WaitingForSource: the job's source directory has not been uploaded, or "
        "NotReady: an MPI worker runs but its readiness probe fails, and the launcher waits."
    )
    message: str = Field(
        description="The scheduler's or the kubelet's words, e.g. `0/7 nodes are available: "
        "3 Insufficient nvidia.com/gpu`."
    )


class ReconcileFailure(Model):
    """Why the operator cannot currently act on a job."""

    message: str = Field(description="The last error of a pass over this job.")
    attempts: int = Field(description="Passes that failed in a row.")
    since: dt.datetime = Field(description="When the first of those passes failed.")


class TensorFlowJobStatus(Model):
    """What the operator observed, written by it alone."""

    state: str | None = Field(
        None, description="Current state: the latest true condition (Created, Running...)."
    )
    ready: str | None = Field(None, description="Ready pods / desired pods, for display.")
    conditions: list[Condition] | None = Field(
        None,
        description="Conditions, one per type.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    replica_statuses: dict[str, ReplicaStatus] | None = Field(
        None, description="Pods by replica type (Chief, Worker, PS...)."
    )
    start_time: dt.datetime | None = Field(None, description="When the operator started it.")
    completion_time: dt.datetime | None = Field(None, description="When it finished.")
    observed_generation: int | None = Field(
        None, description="The metadata.generation this status describes."
    )
    metrics: dict[str, float] | None = Field(
        None,
        description=(
            "The final metrics the training reported (for example loss), from the termination "
            "message of the pod that decided the job's success: a JSON document "
            '`{"tfjob.dev/metrics": {"loss": 0.12}}`, which images/trainer/tfjob_metrics.py '
            "writes (log(), or its Keras callback)."
        ),
    )
    attempt: int | None = Field(
        None,
        description=(
            "Which run of the whole job this is: 1, then one more each time a retried failure "
            "restarted every pod (runPolicy.restartScope Job). The pods carry it as the label "
            "tfjob.dev/attempt."
        ),
    )
    settling: Settling | None = Field(
        None,
        description=(
            "Set while a permanent failure in a collective (or a parameter-server job's PS or "
            "Chief) waits for the attempt's other pods: each kubelet reports on its own "
            "schedule, and a peer that was killed first makes the failure its consequence. "
            "Kept here so an operator restart decides at the same moment."
        ),
    )
    replacing: list[str] | None = Field(
        None,
        description=(
            "The uids of failed or taken pods whose restart is counted and that are being "
            "replaced under their own names; each leaves the list once it is gone, so it is "
            "never counted twice, whatever happens between the count and the delete."
        ),
    )
    waiting: list[PendingPod] | None = Field(
        None,
        description=(
            "While the job runs, its pods (at most 5) that cannot start yet and why: the "
            "scheduler's reason or the image-pull or container-creation error a pod reports, "
            "updated as it changes."
        ),
    )
    ssh_secret: str | None = Field(
        None,
        description=(
            "An MPI job's SSH key Secret. The API server generates its name (<job>-ssh-xxxxx) "
            "when the operator creates it, before any pod: nobody else in the namespace can "
            "create it first and have the job trust their key. The pods mount the Secret "
            "named here."
        ),
    )
    reconcile_failure: ReconcileFailure | None = Field(
        None,
        description=(
            "Set while the operator's passes over this job keep failing (once "
            f"{RECONCILE_FAILURES_REPORTED} passes in a row failed): the last error and how many "
            "passes failed. The operator retries with a delay doubling from 1 s to 60 s, and "
            "clears this field with the next pass that succeeds."
        ),
    )


def _replica_name_rule(path: str, replicas: str, suffix: str) -> str:
    """CEL: the longest pod name of a replica type, <job>-<suffix>-<replicas-1>, fits a label."""
    parent, _, child = path.rpartition(".")
    return (
        f"!has(self.spec.{parent}) || !has(self.spec.{parent}.{child}) || "
        f"size(self.metadata.name) + {len(suffix) + 2} + "
        f"size(string(({replicas}) - 1)) <= {MAX_DNS_LABEL}"
    )


def _name_rules() -> list[dict[str, str]]:
    rules = [
        _cel(
            "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', "
            "starting with a letter): it names the job's service and pods",
        )
    ]
    for replica_type in ReplicaType:
        path = f"tfReplicaSpecs.{replica_type.value}"
        count = f"has(self.spec.{path}.replicas) ? self.spec.{path}.replicas : 1"
        rules.append(
            _cel(
                _replica_name_rule(path, count, replica_type.value.lower()),
                f"metadata.name is too long: pod names <name>-{replica_type.value.lower()}-<index> "
                f"must fit in {MAX_DNS_LABEL} characters",
            )
        )
    distribution = "has(self.spec.distribution) && has(self.spec.distribution.{})"
    workers = (
        f"({distribution.format('workerCount')} ? self.spec.distribution.workerCount : "
        f"({distribution.format('nodeCount')} ? self.spec.distribution.nodeCount : 1))"
    )
    rules.append(
        _cel(
            "!has(self.spec.entryScript) || size(self.metadata.name) + 2 + size('worker') + "
            f"size(string({workers} - 1)) <= {MAX_DNS_LABEL}",
            f"metadata.name is too long: pod names <name>-worker-<index> (up to workerCount or "
            f"nodeCount) must fit in {MAX_DNS_LABEL} characters",
        )
    )
    rules.append(
        _cel(
            "!has(self.spec.entryScript) || !has(self.spec.distribution) || "
            "self.spec.distribution.backend != 'mpi' || "
            f"size(self.metadata.name) + size('-launcher-0') <= {MAX_DNS_LABEL}",
            f"metadata.name is too long: the MPI launcher's pod name <name>-launcher-0 must fit "
            f"in {MAX_DNS_LABEL} characters",
        )
    )
    return rules


class TensorFlowJob(Model):
    """A distributed TensorFlow training job: its pods, TF_CONFIG and status, from one resource."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _name_rules()})

    api_version: str = Field(API_VERSION, description="tfjob.dev/v1alpha1")
    kind: str = Field(KIND, description="TensorFlowJob")
    metadata: dict[str, Any] = Field(description="Standard object metadata.")
    spec: TensorFlowJobSpec = Field(description="The desired training job.")
    status: TensorFlowJobStatus | None = Field(None, description="Observed state.")
