"""Compile the estimator form ("run train.py on 2 workers with GPUs") into replica specs.

One pure function, so a user can see exactly what a short spec becomes
(`tfjob-operator compile -f job.yaml`), and the rest of the operator only ever deals with the
Kubeflow form.
"""

from __future__ import annotations

import copy
from typing import Any

from tfjob_operator.api.labels import GPU_RESOURCE
from tfjob_operator.api.v1alpha1 import (
    CHECKPOINT_DIR_ENV,
    Backend,
    MPISpec,
    PackageIndex,
    ReplicaSpecs,
    ReplicaType,
    ScriptParamValue,
    TensorFlowJobSpec,
)
from tfjob_operator.settings import OperatorSettings

from .mpi import mpirun_command, sshd_command
from .packages import PACKAGES_PYTHON, apply_packages
from .source import apply_source
from .topology import TRAINER_CONTAINER


def script_arguments(params: dict[str, ScriptParamValue] | None) -> list[str]:
    """`{--epochs: 5, --verbose: true, --no-cuda: '', --dry-run: false}` ->
    `--epochs 5 --verbose --no-cuda`: true, empty and null values are flags alone."""
    arguments: list[str] = []
    for flag, value in (params or {}).items():
        if value is True or value is None or value == "":
            arguments.append(flag)
        elif value is False:
            continue
        else:
            arguments += [flag, str(value)]
    return arguments


def command_line(spec: TensorFlowJobSpec) -> list[str]:
    """What the entry script gets after its name: scriptParams' flags, then arguments as
    written."""
    return [*script_arguments(spec.script_params), *(spec.arguments or [])]


def trainer_command(spec: TensorFlowJobSpec) -> list[str]:
    assert spec.entry_script is not None
    return ["python", spec.entry_script, *command_line(spec)]


def package_index(spec: TensorFlowJobSpec, settings: OperatorSettings) -> PackageIndex | None:
    """The index a job's pipPackages come from: its own, else the operator's, else PyPI."""
    if spec.package_index is not None:
        return spec.package_index
    if settings.package_index_url:
        return PackageIndex(
            url=settings.package_index_url, credentials_secret=settings.package_index_secret
        )
    return None


def _with_code(
    template: dict[str, Any], spec: TensorFlowJobSpec, settings: OperatorSettings
) -> dict[str, Any]:
    """The template with the job's code in place, then its packages installed."""
    if spec.source:
        template = apply_source(template, spec.source)
    if spec.pip_packages:
        template = apply_packages(template, spec.pip_packages, package_index(spec, settings))
    return template


def _merge_named(base: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lists of named items (env, volumeMounts, containers): extra replaces same-named items."""
    merged = {item["name"]: item for item in base}
    for item in extra:
        merged[item["name"]] = item
    return list(merged.values())


def _merge_container(generated: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    merged = {**generated, **{k: v for k, v in user.items() if k not in ("env", "resources")}}
    if user.get("env"):
        merged["env"] = _merge_named(generated.get("env", []), user["env"])
    if user.get("resources"):
        resources = copy.deepcopy(generated.get("resources", {}))
        for kind, amounts in user["resources"].items():
            if isinstance(amounts, dict):  # limits, requests: amount by amount
                resources[kind] = {**resources.get(kind, {}), **amounts}
            else:  # claims (Dynamic Resource Allocation): the user's, as written
                resources[kind] = amounts
        merged["resources"] = resources
    return merged


def _pod_template(
    spec: TensorFlowJobSpec, settings: OperatorSettings, *, gpus: int
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": spec.image
        or (settings.default_gpu_image if spec.use_gpu else settings.default_image),
        "command": trainer_command(spec),
    }
    if spec.environment_variables:
        container["env"] = [
            {"name": name, "value": value} for name, value in spec.environment_variables.items()
        ]
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    template: dict[str, Any] = {"spec": {"containers": [container]}}
    if spec.template is None:
        return _with_code(template, spec, settings)
    user = spec.template.model_dump(by_alias=True, exclude_none=True)
    if "metadata" in user:
        template["metadata"] = user["metadata"]
    user_spec = user.get("spec", {})
    for key, value in user_spec.items():
        if key != "containers":
            template["spec"][key] = value
    by_name = {c["name"]: c for c in user_spec.get("containers", [])}
    merged_trainer = _merge_container(container, by_name.pop(TRAINER_CONTAINER, {}))
    template["spec"]["containers"] = [merged_trainer, *by_name.values()]
    return _with_code(template, spec, settings)


def compile_replica_specs(spec: TensorFlowJobSpec, settings: OperatorSettings) -> ReplicaSpecs:
    """The replica specs a job runs: its own (Kubeflow form) or compiled (estimator form).

    - no distribution: one Worker;
    - multiWorkerMirrored: workerCount Workers;
    - parameterServer: one Chief (the coordinator), workerCount Workers and
      parameterServerCount PS. Every replica runs the entry script, which picks its role from
      TF_CONFIG. With useGpu, Workers (who compute) get the GPUs; chief and PS do not.
    """
    if (spec.tf_replica_specs is None) == (spec.entry_script is None):
        # The CRD refuses this at apply; a job stored some other way is refused here.
        raise ValueError(
            "spec: set exactly one of spec.tfReplicaSpecs (Kubeflow form) or spec.entryScript "
            "(estimator form)"
        )
    if spec.tf_replica_specs is not None:
        return spec.tf_replica_specs
    gpus = (spec.gpu_count or 1) if spec.use_gpu else 0
    distribution = spec.distribution

    def replica(count: int, *, with_gpus: bool) -> dict[str, Any]:
        return {
            "replicas": count,
            "restartPolicy": "ExitCode",
            "template": _pod_template(spec, settings, gpus=gpus if with_gpus else 0),
        }

    replicas: dict[str, Any] = {}
    if distribution is not None and distribution.backend is Backend.MPI:
        return _compile_mpi(spec, settings)
    if distribution is None:
        replicas[ReplicaType.WORKER.value] = replica(1, with_gpus=True)
    elif distribution.backend is Backend.MULTI_WORKER_MIRRORED:
        replicas[ReplicaType.WORKER.value] = replica(distribution.worker_count, with_gpus=True)
    else:
        replicas[ReplicaType.CHIEF.value] = replica(1, with_gpus=False)
        replicas[ReplicaType.WORKER.value] = replica(distribution.worker_count, with_gpus=True)
        replicas[ReplicaType.PS.value] = replica(
            distribution.parameter_server_count or 1, with_gpus=False
        )
    return ReplicaSpecs.model_validate(replicas)


def effective_mpi(spec: TensorFlowJobSpec) -> MPISpec | None:
    """The MPI settings of a job: its own (Kubeflow form) or those the mpi backend implies."""
    if spec.mpi is not None:
        return spec.mpi
    distribution = spec.distribution
    if distribution is None or distribution.backend is not Backend.MPI:
        return None
    return MPISpec(slots_per_worker=distribution.process_count_per_node or 1)


def _compile_mpi(spec: TensorFlowJobSpec, settings: OperatorSettings) -> ReplicaSpecs:
    """Horovod over MPI: nodeCount workers running sshd, one launcher running mpirun.

    Each worker holds processCountPerNode MPI slots (and, with useGpu, as many GPUs); the
    launcher starts nodeCount x processCountPerNode copies of the entry script over SSH.
    """
    assert spec.distribution is not None
    nodes = spec.distribution.node_count or 1
    per_node = spec.distribution.process_count_per_node or 1
    mpi = effective_mpi(spec)
    assert mpi is not None
    image = spec.image or settings.default_horovod_image
    # The ranks run on the workers, which install the packages; the launcher only starts them.
    python = PACKAGES_PYTHON if spec.pip_packages else "python"
    script = [python, spec.entry_script or "", *command_line(spec)]
    worker_spec = spec.model_copy(update={"image": image})
    worker = _pod_template(worker_spec, settings, gpus=per_node if spec.use_gpu else 0)
    worker["spec"]["containers"][0]["command"] = sshd_command(mpi.ssh_port)
    launcher_spec = worker_spec.model_copy(update={"pip_packages": None})
    launcher = _pod_template(launcher_spec, settings, gpus=0)
    trainer = launcher["spec"]["containers"][0]
    forwarded = [variable["name"] for variable in trainer.get("env", [])]
    if spec.checkpoint is not None:
        forwarded.append(CHECKPOINT_DIR_ENV)  # set on every pod later, by the pod builder
    trainer["command"] = mpirun_command(nodes * per_node, script, forwarded)
    user = settings.default_horovod_image_user
    if spec.image is None and user is not None:
        # Said, not left to the image: the operator then knows whose the job's SSH key must be.
        # Into the template's own securityContext too (a restricted namespace makes every job
        # say runAsNonRoot and a seccomp profile), unless it names a user itself.
        for template in (launcher, worker):
            context = template["spec"].setdefault("securityContext", {})
            named = [
                context,
                *(c.get("securityContext") or {} for c in template["spec"]["containers"]),
            ]
            if not any("runAsUser" in said for said in named):
                for key, value in (
                    ("runAsNonRoot", True),
                    ("runAsUser", user),
                    ("runAsGroup", user),
                ):
                    context.setdefault(key, value)
    return ReplicaSpecs.model_validate(
        {
            ReplicaType.LAUNCHER.value: {
                "replicas": 1,
                "restartPolicy": "ExitCode",
                "template": launcher,
            },
            ReplicaType.WORKER.value: {
                "replicas": nodes,
                "restartPolicy": "ExitCode",
                "template": worker,
            },
        }
    )


def compiled_job(job: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """A whole TensorFlowJob manifest, rewritten in the Kubeflow form."""
    spec = TensorFlowJobSpec.model_validate(job.get("spec", {}))
    replica_specs = compile_replica_specs(spec, settings)
    compiled_spec: dict[str, Any] = {
        "tfReplicaSpecs": replica_specs.model_dump(by_alias=True, exclude_none=True, mode="json")
    }
    mpi = effective_mpi(spec)
    if mpi is not None:
        compiled_spec["mpi"] = mpi.model_dump(by_alias=True, mode="json")
    for key in ("runPolicy", "successPolicy", "nodePool", "checkpoint"):
        if key in job.get("spec", {}):
            compiled_spec[key] = job["spec"][key]
    return {
        "apiVersion": job.get("apiVersion"),
        "kind": job.get("kind"),
        "metadata": job.get("metadata", {}),
        "spec": compiled_spec,
    }
