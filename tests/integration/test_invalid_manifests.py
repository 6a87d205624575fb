"""Manifests the API server must refuse, applied the way users apply them: `kubectl apply -f -`.

Every invalid manifest is a valid one (see the positive controls at the end) with one mistake, so
a refusal can only come from that mistake. Each refusal must name the offending field (or say
what a CEL rule checks), and no refused job may exist afterwards. No operator runs here: the CRD
schema and its CEL rules alone decide.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("crd")]

Manifest = dict[str, Any]

JOB = "mnist"


def container(**extra: Any) -> dict[str, Any]:
    return {
        "name": "tensorflow",
        "image": "tensorflow/tensorflow:2.21.0",
        "command": ["python", "/opt/train.py"],
        **extra,
    }


def replica(replicas: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "replicas": replicas,
        "restartPolicy": "OnFailure",
        "template": {"spec": {"containers": [container()]}},
        **extra,
    }


def kubeflow_form(name: str = JOB) -> Manifest:
    """A valid Kubeflow-form job: a Worker, runPolicy and successPolicy set explicitly."""
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {
            "tfReplicaSpecs": {"Worker": replica(2)},
            "runPolicy": {"cleanPodPolicy": "Running", "activeDeadlineSeconds": 3600},
            "successPolicy": "AllWorkers",
        },
    }


def estimator_form(name: str = JOB) -> Manifest:
    """A valid estimator-form job with every estimator field the cases below touch."""
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {
            "entryScript": "train.py",
            "scriptParams": {"--epochs": 2},
            "useGpu": True,
            "gpuCount": 2,
            "distribution": {
                "backend": "parameterServer",
                "workerCount": 2,
                "parameterServerCount": 1,
            },
        },
    }


# ----- mutations: each takes a valid manifest and makes one mistake ---------------------------


def kubeflow(change: Callable[[Manifest], None]) -> Callable[[], Manifest]:
    def build() -> Manifest:
        manifest = kubeflow_form()
        change(manifest)
        return manifest

    return build


def estimator(change: Callable[[Manifest], None]) -> Callable[[], Manifest]:
    def build() -> Manifest:
        manifest = estimator_form()
        change(manifest)
        return manifest

    return build


def replicas_of(manifest: Manifest) -> dict[str, Any]:
    return manifest["spec"]["tfReplicaSpecs"]


def worker(manifest: Manifest) -> dict[str, Any]:
    return replicas_of(manifest)["Worker"]


def worker_container(manifest: Manifest) -> dict[str, Any]:
    return worker(manifest)["template"]["spec"]["containers"][0]


def setter(*path: str, value: Any) -> Callable[[Manifest], None]:
    """Set manifest[path[0]]...[path[-1]] = value."""

    def change(manifest: Manifest) -> None:
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def remover(*path: str) -> Callable[[Manifest], None]:
    def change(manifest: Manifest) -> None:
        node = manifest
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


def with_replicas(**specs: dict[str, Any]) -> Callable[[Manifest], None]:
    def change(manifest: Manifest) -> None:
        manifest["spec"]["tfReplicaSpecs"] = dict(specs)

    return change


def rename(name: str) -> Callable[[Manifest], None]:
    return setter("metadata", "name", value=name)


def add_estimator_field(field: str, value: Any) -> Callable[[Manifest], None]:
    return setter("spec", field, value=value)


def set_container(**fields: Any) -> Callable[[Manifest], None]:
    def change(manifest: Manifest) -> None:
        worker_container(manifest).update(fields)

    return change


def drop_container_name(manifest: Manifest) -> None:
    del worker_container(manifest)["name"]


def drop_image(manifest: Manifest) -> None:
    del worker_container(manifest)["image"]


def drop_containers(manifest: Manifest) -> None:
    del worker(manifest)["template"]["spec"]["containers"]
    worker(manifest)["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]


def with_entry_script(manifest: Manifest) -> None:
    manifest["spec"]["entryScript"] = "train.py"


def without_both_forms(manifest: Manifest) -> None:
    del manifest["spec"]["tfReplicaSpecs"]


def long_name_with_evaluator(manifest: Manifest) -> None:
    """A name that fits <name>-worker-1 but not <name>-evaluator-0."""
    manifest["metadata"]["name"] = NAME_54
    replicas_of(manifest)["Evaluator"] = replica(1)


def horovod(name: str, *, node_count: int) -> Callable[[Manifest], None]:
    """The seed's Horovod case: distribution mpi over ``node_count`` nodes, named ``name``."""

    def change(manifest: Manifest) -> None:
        manifest["metadata"]["name"] = name
        manifest["spec"].pop("gpuCount")
        manifest["spec"]["distribution"] = {
            "backend": "mpi",
            "nodeCount": node_count,
            "processCountPerNode": 1,
        }

    return change


def rename_spec_field(old: str, new: str) -> Callable[[Manifest], None]:
    def change(manifest: Manifest) -> None:
        manifest["spec"][new] = manifest["spec"].pop(old)

    return change


def rename_replica_type(new: str) -> Callable[[Manifest], None]:
    def change(manifest: Manifest) -> None:
        specs = replicas_of(manifest)
        specs[new] = specs.pop("Worker")

    return change


COMBINED_FORMS = (
    "spec: Invalid value: spec.tfReplicaSpecs cannot be combined with the estimator fields"
)

NAME_58 = "resnet50-imagenet-multi-worker-mirrored-strategy-bs1024-lr"
# The longest name a Kubeflow-form job with 2 Workers can have: <name>-worker-1 is 63 long.
NAME_54 = NAME_58[:54]
NAME_55 = NAME_58[:55]
assert len(NAME_58) == 58
assert len(NAME_54) == 54

CASES = [
    # --- a Kubeflow-form container needs its image, as Kubeflow and a Pod need it ------------
    pytest.param(
        kubeflow(drop_image),
        ["spec.tfReplicaSpecs.Worker.template.spec.containers[0].image: Required value"],
        id="kubeflow-container-without-image",
    ),
    pytest.param(
        kubeflow(set_container(image="")),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.containers[0].image: Invalid value",
            "should be at least 1 chars long",
        ],
        id="kubeflow-container-with-empty-image",
    ),
    # --- wrong types ------------------------------------------------------------------------
    pytest.param(
        kubeflow(setter("spec", "tfReplicaSpecs", "Worker", "replicas", value="two")),
        [
            'spec.tfReplicaSpecs.Worker.replicas: Invalid value: "string"',
            "spec.tfReplicaSpecs.Worker.replicas in body must be of type integer",
        ],
        id="replicas-is-a-string",
    ),
    pytest.param(
        estimator(setter("spec", "useGpu", value="yes")),
        ['spec.useGpu: Invalid value: "string"', "spec.useGpu in body must be of type boolean"],
        id="useGpu-is-a-string",
    ),
    pytest.param(
        estimator(setter("spec", "distribution", "workerCount", value=1.5)),
        [
            'spec.distribution.workerCount: Invalid value: "number"',
            "spec.distribution.workerCount in body must be of type integer",
        ],
        id="workerCount-is-a-float",
    ),
    # --- replica counts and types ------------------------------------------------------------
    pytest.param(
        kubeflow(setter("spec", "tfReplicaSpecs", "Worker", "replicas", value=-1)),
        [
            "spec.tfReplicaSpecs.Worker.replicas: Invalid value: -1",
            "should be greater than or equal to 0",
        ],
        id="negative-replicas",
    ),
    pytest.param(
        kubeflow(with_replicas(Chief=replica(2), Worker=replica(2))),
        ["spec.tfReplicaSpecs.Chief.replicas: Invalid value: Chief must have at most 1 replica"],
        id="two-chiefs",
    ),
    pytest.param(
        kubeflow(with_replicas(Master=replica(2), Worker=replica(2))),
        ["spec.tfReplicaSpecs.Master.replicas: Invalid value: Master must have at most 1 replica"],
        id="two-masters",
    ),
    pytest.param(
        kubeflow(with_replicas(Chief=replica(1), Master=replica(1), Worker=replica(2))),
        ["spec.tfReplicaSpecs: Invalid value: set Chief or Master, not both"],
        id="chief-and-master",
    ),
    pytest.param(
        kubeflow(with_replicas(Chief=replica(1), PS=replica(1))),
        ["spec.tfReplicaSpecs.PS: Invalid value: a job with PS replicas needs at least one Worker"],
        id="ps-without-worker",
    ),
    pytest.param(
        kubeflow(with_replicas(Chief=replica(1), Worker=replica(0), PS=replica(1))),
        ["spec.tfReplicaSpecs.PS: Invalid value: a job with PS replicas needs at least one Worker"],
        id="ps-with-zero-workers",
    ),
    pytest.param(
        kubeflow(with_replicas(Worker=replica(2), Evaluator=replica(2))),
        [
            "spec.tfReplicaSpecs.Evaluator.replicas: "
            "Invalid value: Evaluator must have at most 1 replica"
        ],
        id="two-evaluators",
    ),
    pytest.param(
        kubeflow(rename_replica_type("Scheduler")),
        ['strict decoding error: unknown field "spec.tfReplicaSpecs.Scheduler"'],
        id="unknown-replica-type-Scheduler",
    ),
    pytest.param(
        kubeflow(rename_replica_type("worker")),
        ['strict decoding error: unknown field "spec.tfReplicaSpecs.worker"'],
        id="lower-case-replica-type-worker",
    ),
    pytest.param(
        kubeflow(with_replicas()),
        [
            "spec.tfReplicaSpecs: Invalid value: 0",
            "spec.tfReplicaSpecs in body should have at least 1 properties",
        ],
        id="empty-tfReplicaSpecs",
    ),
    pytest.param(
        kubeflow(remover("spec", "tfReplicaSpecs", "Worker", "template")),
        ["spec.tfReplicaSpecs.Worker.template: Required value"],
        id="replica-without-template",
    ),
    pytest.param(
        kubeflow(with_replicas(Evaluator=replica(1))),
        ["spec.tfReplicaSpecs", "a job needs a Chief, Master or Worker with at least one replica"],
        id="evaluator-only-no-chief-or-worker",
    ),
    pytest.param(
        kubeflow(with_replicas(Worker=replica(0))),
        ["spec.tfReplicaSpecs", "a job needs a Chief, Master or Worker with at least one replica"],
        id="zero-pods-worker-replicas-0-only",
    ),
    # --- names ------------------------------------------------------------------------------
    pytest.param(
        kubeflow(rename(NAME_58)),
        [
            f'The TensorFlowJob "{NAME_58}" is invalid',
            "metadata.name is too long: pod names <name>-worker-<index> must fit in 63 characters",
        ],
        id="name-58-chars-with-worker",
    ),
    pytest.param(
        kubeflow(rename(NAME_55)),
        [
            f'The TensorFlowJob "{NAME_55}" is invalid',
            "metadata.name is too long: pod names <name>-worker-<index> must fit in 63 characters",
        ],
        id="name-55-chars-one-too-long-for-worker-1",
    ),
    pytest.param(
        kubeflow(long_name_with_evaluator),
        ["metadata.name is too long: pod names <name>-evaluator-<index> must fit in 63 characters"],
        id="name-too-long-for-evaluator",
    ),
    pytest.param(
        estimator(rename(NAME_58)),
        ["metadata.name is too long: pod names <name>-worker-<index> (up to workerCount or"],
        id="estimator-name-too-long",
    ),
    pytest.param(
        # <54>-worker-1 fits (63), but the launcher's <54>-launcher-0 does not (65).
        estimator(horovod(NAME_54, node_count=2)),
        ["metadata.name is too long: the MPI launcher's pod name <name>-launcher-0 must fit"],
        id="mpi-name-too-long-for-the-launcher",
    ),
    pytest.param(
        # 10,000 nodes: <52>-worker-9999 is 64 long (1,000 nodes fit: see the valid cases).
        estimator(horovod(NAME_54[:52], node_count=10000)),
        ["metadata.name is too long: pod names <name>-worker-<index> (up to workerCount or"],
        id="mpi-name-too-long-for-node-count",
    ),
    pytest.param(
        kubeflow(rename("2-mnist")),
        [
            'The TensorFlowJob "2-mnist" is invalid',
            "Invalid value: metadata.name must be a DNS-1035 label",
        ],
        id="name-starts-with-a-digit",
    ),
    pytest.param(
        kubeflow(rename("mnist.v2")),
        [
            'The TensorFlowJob "mnist.v2" is invalid',
            "Invalid value: metadata.name must be a DNS-1035 label",
        ],
        id="name-has-a-dot",
    ),
    pytest.param(
        kubeflow(rename("Mnist")),
        [
            'metadata.name: Invalid value: "Mnist": a lowercase RFC 1123 subdomain',
            "Invalid value: metadata.name must be a DNS-1035 label",
        ],
        id="name-has-uppercase",
    ),
    # --- the two forms ----------------------------------------------------------------------
    pytest.param(
        kubeflow(with_entry_script),
        [
            "spec: Invalid value: set exactly one of spec.tfReplicaSpecs (Kubeflow form) "
            "or spec.entryScript (estimator form)"
        ],
        id="tfReplicaSpecs-and-entryScript",
    ),
    pytest.param(
        kubeflow(without_both_forms),
        [
            "spec: Invalid value: set exactly one of spec.tfReplicaSpecs (Kubeflow form) "
            "or spec.entryScript (estimator form)"
        ],
        id="neither-tfReplicaSpecs-nor-entryScript",
    ),
    pytest.param(
        kubeflow(rename_spec_field("tfReplicaSpecs", "replicaSpecs")),
        [
            'strict decoding error: unknown field "spec.replicaSpecs"',
        ],
        id="misspelt-tfReplicaSpecs",
    ),
    pytest.param(
        kubeflow(add_estimator_field("scriptParams", {"--epochs": 2})),
        [COMBINED_FORMS, "scriptParams"],
        id="scriptParams-with-tfReplicaSpecs",
    ),
    pytest.param(
        kubeflow(add_estimator_field("useGpu", True)),
        [COMBINED_FORMS, "useGpu"],
        id="useGpu-with-tfReplicaSpecs",
    ),
    pytest.param(
        kubeflow(add_estimator_field("image", "tensorflow/tensorflow:2.21.0-gpu")),
        [COMBINED_FORMS, "image"],
        id="image-with-tfReplicaSpecs",
    ),
    pytest.param(
        kubeflow(add_estimator_field("source", {"directory": {"configMap": "code"}})),
        [COMBINED_FORMS, "source: put them in the replica templates"],
        id="source-with-tfReplicaSpecs",
    ),
    # --- estimator fields -------------------------------------------------------------------
    pytest.param(
        estimator(setter("spec", "source", value={})),
        [
            "spec.source: Invalid value: set exactly one of spec.source.directory "
            "or spec.source.persistentVolumeClaim"
        ],
        id="source-names-nothing",
    ),
    pytest.param(
        estimator(
            setter(
                "spec",
                "source",
                value={
                    "directory": {"configMap": "a"},
                    "persistentVolumeClaim": {"claimName": "b"},
                },
            )
        ),
        ["set exactly one of spec.source.directory or spec.source.persistentVolumeClaim"],
        id="source-names-two",
    ),
    pytest.param(
        kubeflow(setter("spec", "checkpoint", value={"mountPath": "/checkpoint"})),
        ["spec.checkpoint.persistentVolumeClaim: Required value"],
        id="checkpoint-without-claim",
    ),
    pytest.param(
        estimator(
            setter(
                "spec",
                "checkpoint",
                value={"persistentVolumeClaim": {"claimName": "ck"}, "mountPath": "ck"},
            )
        ),
        [
            "spec.checkpoint.mountPath: Invalid value",
            "spec.checkpoint.mountPath must be an absolute path",
        ],
        id="checkpoint-relative-mountPath",
    ),
    pytest.param(
        estimator(
            setter(
                "spec",
                "checkpoint",
                value={"persistentVolumeClaim": {"claimName": "ck"}, "mountPath": "/workspace/c"},
            )
        ),
        ["outside /workspace (the code's directory)"],
        id="checkpoint-in-the-code-directory",
    ),
    pytest.param(
        estimator(remover("spec", "useGpu")),
        ["spec.gpuCount: Invalid value: spec.gpuCount needs spec.useGpu: true"],
        id="gpuCount-without-useGpu",
    ),
    pytest.param(
        estimator(setter("spec", "useGpu", value=False)),
        ["spec.gpuCount: Invalid value: spec.gpuCount needs spec.useGpu: true"],
        id="gpuCount-with-useGpu-false",
    ),
    pytest.param(
        estimator(setter("spec", "pipPackages", value=["pandas", "-r requirements.txt"])),
        [
            "spec.pipPackages: Invalid value",
            "spec.pipPackages lists requirements (name, name==version, a URL or a path in the "
            "source), not pip options",
        ],
        id="pip-option-in-pipPackages",
    ),
    pytest.param(
        estimator(setter("spec", "condaPackages", value=["scikit-learn"])),
        [
            "spec.condaPackages: Invalid value",
            "spec.condaPackages is not supported: the trainer images have no conda; list the "
            "packages in spec.pipPackages",
        ],
        id="condaPackages-from-the-seed",
    ),
    pytest.param(
        estimator(setter("spec", "packageIndex", value={"url": "https://pypi.example/simple"})),
        [
            "spec.packageIndex: Invalid value",
            "spec.packageIndex names where spec.pipPackages come from",
        ],
        id="packageIndex-without-pipPackages",
    ),
    pytest.param(
        estimator(
            lambda m: m["spec"].update(
                pipPackages=["pandas"], packageIndex={"url": "ftp://pypi.example/simple"}
            )
        ),
        ['spec.packageIndex.url: Invalid value: "ftp://pypi.example/simple"', "should match"],
        id="packageIndex-url-not-http",
    ),
    pytest.param(
        estimator(setter("spec", "gpuCount", value=65)),
        ["spec.gpuCount: Invalid value: 65", "should be less than or equal to 64"],
        id="gpuCount-above-64",
    ),
    pytest.param(
        estimator(setter("spec", "distribution", "backend", value="multiWorkerMirrored")),
        [
            "spec.distribution.parameterServerCount: Invalid value: "
            "parameterServerCount applies only to backend parameterServer"
        ],
        id="parameterServerCount-with-multiWorkerMirrored",
    ),
    pytest.param(
        estimator(setter("spec", "distribution", "backend", value="horovod")),
        [
            'spec.distribution.backend: Unsupported value: "horovod": supported values: '
            '"multiWorkerMirrored", "parameterServer"'
        ],
        id="unknown-backend",
    ),
    pytest.param(
        estimator(setter("spec", "distribution", "workerCount", value=0)),
        [
            "spec.distribution.workerCount: Invalid value: 0",
            "should be greater than or equal to 1",
        ],
        id="workerCount-zero",
    ),
    # --- pod templates ----------------------------------------------------------------------
    pytest.param(
        kubeflow(drop_containers),
        ["spec.tfReplicaSpecs.Worker.template.spec.containers: Required value"],
        id="template-without-containers",
    ),
    pytest.param(
        kubeflow(
            setter("spec", "tfReplicaSpecs", "Worker", "template", "spec", "containers", value=[])
        ),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.containers: Invalid value: 0",
            "should have at least 1 items",
        ],
        id="template-with-empty-containers",
    ),
    pytest.param(
        kubeflow(drop_container_name),
        ["spec.tfReplicaSpecs.Worker.template.spec.containers[0].name: Required value"],
        id="container-without-name",
    ),
    pytest.param(
        kubeflow(set_container(env=[{"value": "1"}])),
        ["spec.tfReplicaSpecs.Worker.template.spec.containers[0].env[0].name: Required value"],
        id="env-var-without-name",
    ),
    pytest.param(
        kubeflow(set_container(ports=[{"name": "tfjob-port", "containerPort": 70000}])),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.containers[0].ports[0].containerPort: "
            "Invalid value: 70000",
            "should be less than or equal to 65535",
        ],
        id="containerPort-out-of-range",
    ),
    pytest.param(
        kubeflow(setter("spec", "tfReplicaSpecs", "Worker", "restartPolicy", value="Sometimes")),
        [
            'spec.tfReplicaSpecs.Worker.restartPolicy: Unsupported value: "Sometimes": '
            'supported values: "Always", "OnFailure", "Never", "ExitCode"'
        ],
        id="restartPolicy-not-in-enum",
    ),
    # --- run and success policies -----------------------------------------------------------
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "schedulingPolicy", value={"minMember": 2})),
        ['strict decoding error: unknown field "spec.runPolicy.schedulingPolicy.minMember"'],
        id="schedulingPolicy-unknown-field",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "schedulingPolicy", value={"queue": "team a:gpu"})),
        ["spec.runPolicy.schedulingPolicy.queue: Invalid value", "should match"],
        id="queue-not-a-label-value",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "managedBy", value="volcano.sh/scheduler")),
        [
            'spec.runPolicy.managedBy: Unsupported value: "volcano.sh/scheduler": supported '
            'values: "tfjob.dev/operator", "kueue.x-k8s.io/multikueue"'
        ],
        id="managedBy-not-in-enum",
    ),
    pytest.param(
        kubeflow(
            setter("spec", "runPolicy", "schedulingPolicy", value={"minResources": {"cpu": "8"}})
        ),
        [
            "spec.runPolicy.schedulingPolicy.minResources: Invalid value",
            "minResources is not supported: the gang (a PodGroup) and Kueue count the pods' own "
            "resource requests",
        ],
        id="minResources-volcano-only",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "restartScope", value="Node")),
        ['spec.runPolicy.restartScope: Unsupported value: "Node": supported values: "Pod", "Job"'],
        id="restartScope-not-in-enum",
    ),
    pytest.param(
        kubeflow(
            setter("spec", "runPolicy", "schedulingPolicy", value={"scheduleTimeoutSeconds": 0})
        ),
        [
            "spec.runPolicy.schedulingPolicy.scheduleTimeoutSeconds: Invalid value: 0",
            "should be greater than or equal to 1",
        ],
        id="scheduleTimeoutSeconds-zero",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "cleanPodPolicy", value="Everything")),
        [
            'spec.runPolicy.cleanPodPolicy: Unsupported value: "Everything": '
            'supported values: "All", "Running", "None"'
        ],
        id="cleanPodPolicy-not-in-enum",
    ),
    pytest.param(
        kubeflow(setter("spec", "successPolicy", value="AnyWorker")),
        ['spec.successPolicy: Unsupported value: "AnyWorker": supported values: "", "AllWorkers"'],
        id="successPolicy-not-in-enum",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "activeDeadlineSeconds", value=-1)),
        [
            "spec.runPolicy.activeDeadlineSeconds: Invalid value: -1",
            "should be greater than or equal to 1",
        ],
        id="negative-activeDeadlineSeconds",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "backoffLimit", value=-1)),
        [
            "spec.runPolicy.backoffLimit: Invalid value: -1",
            "should be greater than or equal to 0",
        ],
        id="negative-backoffLimit",
    ),
    # --- MPI (Horovod) jobs -----------------------------------------------------------------
    pytest.param(
        kubeflow(with_replicas(Launcher=replica(1), Worker=replica(2))),
        ["spec.mpi: Invalid value", "spec.mpi and a Launcher replica go together"],
        id="launcher-without-spec-mpi",
    ),
    pytest.param(
        kubeflow(setter("spec", "mpi", value={"slotsPerWorker": 2})),
        ["spec.mpi and a Launcher replica go together"],
        id="spec-mpi-without-launcher",
    ),
    pytest.param(
        kubeflow(with_replicas(Launcher=replica(1), Chief=replica(1), Worker=replica(1))),
        ["an MPI job (with a Launcher) has Workers and no Chief, Master, PS or Evaluator"],
        id="launcher-with-chief",
    ),
    pytest.param(
        kubeflow(
            lambda m: (
                with_replicas(Launcher=replica(1), Worker=replica(1))(m),
                setter("spec", "mpi", value={"slotsPerWorker": 0})(m),
            )
        ),
        ["spec.mpi.slotsPerWorker: Invalid value: 0"],
        id="mpi-zero-slots",
    ),
    pytest.param(
        kubeflow(with_replicas(Launcher=replica(2), Worker=replica(1))),
        ["Launcher must have at most 1 replica"],
        id="two-launchers",
    ),
    pytest.param(
        estimator(setter("spec", "distribution", value={"backend": "mpi", "workerCount": 2})),
        ["backend mpi counts nodeCount (worker pods) and processCountPerNode, not workerCount"],
        id="mpi-with-workerCount",
    ),
    pytest.param(
        estimator(
            setter("spec", "distribution", value={"backend": "multiWorkerMirrored", "nodeCount": 2})
        ),
        ["nodeCount and processCountPerNode apply only to backend mpi"],
        id="nodeCount-without-mpi",
    ),
    pytest.param(
        estimator(
            setter("spec", "distribution", value={"backend": "mpi", "processCountPerNode": 0})
        ),
        ["spec.distribution.processCountPerNode: Invalid value: 0"],
        id="mpi-zero-processes-per-node",
    ),
    pytest.param(
        estimator(setter("spec", "distribution", value={"backend": "mpi", "nodeCount": 0})),
        ["spec.distribution.nodeCount: Invalid value: 0"],
        id="mpi-no-workers",
    ),
    pytest.param(
        estimator(
            setter(
                "spec",
                "distribution",
                value={"backend": "mpi", "nodeCount": 2, "processCountPerNode": 2},
            )
        ),
        ["with backend mpi each worker gets processCountPerNode GPUs"],
        id="mpi-gpu-count-differs-from-processes",
    ),
    # --- huge values, unicode and over-long text, absent required parts --------------------
    pytest.param(
        kubeflow(lambda m: replicas_of(m)["Worker"].update(replicas=10001)),
        ["spec.tfReplicaSpecs.Worker.replicas: Invalid value: 10001", "less than or equal to"],
        id="replicas-above-10000",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "activeDeadlineSeconds", value=2**63)),
        ["spec.runPolicy.activeDeadlineSeconds"],
        id="activeDeadlineSeconds-beyond-int64",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "ttlSecondsAfterFinished", value=-5)),
        ["spec.runPolicy.ttlSecondsAfterFinished: Invalid value: -5"],
        id="negative-ttlSecondsAfterFinished",
    ),
    pytest.param(
        kubeflow(setter("spec", "runPolicy", "schedulingPolicy", value={"minAvailable": 0})),
        ["spec.runPolicy.schedulingPolicy.minAvailable: Invalid value: 0"],
        id="minAvailable-zero",
    ),
    pytest.param(
        kubeflow(setter("metadata", "name", value="mnist-\u00fcber")),
        ["metadata.name: Invalid value"],
        id="unicode-name",
    ),
    pytest.param(
        kubeflow(setter("metadata", "name", value="m" * 254)),
        ["metadata.name: Invalid value"],
        id="name-over-253-chars",
    ),
    pytest.param(
        estimator(setter("spec", "entryScript", value="")),
        ["spec.entryScript: Invalid value", "at least 1 chars long"],
        id="empty-entryScript",
    ),
    pytest.param(
        estimator(setter("spec", "scriptParams", value={f"--p{i}": i for i in range(129)})),
        ["spec.scriptParams: Too many: 129: must have at most 128 items"],
        id="scriptParams-over-128",
    ),
    pytest.param(
        kubeflow(
            lambda m: worker(m)["template"]["spec"].update(securityContext={"runAsUser": "1000a"})
        ),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.securityContext.runAsUser: "
            'Invalid value: "string"'
        ],
        id="runAsUser-not-a-number",
    ),
    pytest.param(
        kubeflow(set_container(securityContext={"runAsGroup": -1})),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.containers[0].securityContext.runAsGroup: "
            "Invalid value: -1"
        ],
        id="container-runAsGroup-negative",
    ),
    pytest.param(
        kubeflow(
            lambda m: worker(m)["template"]["spec"].update(
                ephemeralContainers=[{"name": "debug", "image": "busybox:1"}]
            )
        ),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.ephemeralContainers: Invalid value",
            "a pod template cannot have ephemeralContainers",
        ],
        id="ephemeralContainers-in-a-template",
    ),
    # Names the operator gives what it adds: a template using one would take its place.
    pytest.param(
        kubeflow(
            lambda m: worker(m)["template"]["spec"].update(
                volumes=[{"name": "tfjob-ssh", "secret": {"secretName": "other-job-ssh-x"}}]
            )
        ),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.volumes: Invalid value",
            "volume names tfjob-ssh, tfjob-mpi-hostfile, tfjob-checkpoint are the operator's",
        ],
        id="volume-named-as-the-mpi-key",
    ),
    pytest.param(
        kubeflow(set_container(env=[{"name": "TF_CONFIG", "value": '{"cluster": {}}'}])),
        [
            "spec.tfReplicaSpecs.Worker.template.spec.containers[0].env[0].name: Invalid value",
            "TF_CONFIG is the operator's",
        ],
        id="TF_CONFIG-in-a-template",
    ),
    pytest.param(
        estimator(setter("spec", "environmentVariables", value={"TF_CONFIG": "{}"})),
        ["spec.environmentVariables: Invalid value", "TF_CONFIG and variables starting"],
        id="TF_CONFIG-in-environmentVariables",
    ),
    pytest.param(
        estimator(
            setter(
                "spec",
                "template",
                value={"spec": {"volumes": [{"name": "tfjob-packages", "emptyDir": {}}]}},
            )
        ),
        ["spec.template.spec.volumes: Invalid value", "volume names starting tfjob- are"],
        id="estimator-volume-named-tfjob",
    ),
    pytest.param(
        estimator(
            setter(
                "spec",
                "template",
                value={"spec": {"initContainers": [{"name": "tfjob-source", "image": "x:1"}]}},
            )
        ),
        ["spec.template.spec.initContainers: Invalid value", "init container names starting"],
        id="estimator-init-container-named-tfjob",
    ),
    pytest.param(
        estimator(
            setter(
                "spec",
                "template",
                value={
                    "spec": {
                        "containers": [
                            {
                                "name": "tensorflow",
                                "env": [{"name": "TFJOB_PIP_PASSWORD", "value": "x"}],
                            }
                        ]
                    }
                },
            )
        ),
        [
            "spec.template.spec.containers[0].env[0].name: Invalid value",
            "variables starting TFJOB_PIP_ are the operator's",
        ],
        id="estimator-package-index-variable",
    ),
    pytest.param(
        kubeflow(set_container(resources={"claims": [{"name": "gpu"}, {"name": "gpu"}]})),
        ["spec.tfReplicaSpecs.Worker.template.spec.containers[0].resources.claims[1]: Duplicate"],
        id="resource-claim-twice",
    ),
    pytest.param(
        estimator(setter("spec", "arguments", value=["--epochs", 5])),
        ['spec.arguments[1]: Invalid value: "integer"', "must be of type string"],
        id="argument-not-a-string",
    ),
    pytest.param(
        estimator(setter("spec", "arguments", value=[f"a{i}" for i in range(257)])),
        ["spec.arguments: Too many: 257: must have at most 256 items"],
        id="arguments-over-256",
    ),
    pytest.param(
        kubeflow(add_estimator_field("arguments", ["data/"])),
        [COMBINED_FORMS, "arguments"],
        id="arguments-with-tfReplicaSpecs",
    ),
    pytest.param(
        estimator(setter("spec", "pipPackages", value=[f"pkg{i}" for i in range(65)])),
        ["spec.pipPackages: Too many: 65: must have at most 64 items"],
        id="pipPackages-over-64",
    ),
    pytest.param(
        estimator(setter("spec", "pipPackages", value=["x" * 513])),
        ["spec.pipPackages[0]: Too long: may not be more than 512"],
        id="pipPackage-over-512-chars",
    ),
    pytest.param(
        estimator(setter("spec", "environmentVariables", value={"EPOCHS": 5})),
        ['spec.environmentVariables.EPOCHS: Invalid value: "integer"', "must be of type string"],
        id="environmentVariable-not-a-string",
    ),
    pytest.param(
        estimator(setter("spec", "nodePool", value="p" * 64)),
        ["spec.nodePool: Too long: may not be more than 63"],
        id="nodePool-over-63-chars",
    ),
    pytest.param(
        estimator(
            lambda m: m["spec"].update(
                pipPackages=["pandas"], packageIndex={"url": "http://pypi.ml svc/simple"}
            )
        ),
        ["spec.packageIndex.url: Invalid value", "should match"],
        id="packageIndex-url-with-a-space",
    ),
    pytest.param(
        estimator(
            lambda m: m["spec"].update(
                pipPackages=["pandas"],
                packageIndex={"url": "https://ci:gh0_t0ken@pypi.corp/simple"},
            )
        ),
        [
            "spec.packageIndex.url: Invalid value",
            "must not carry credentials (user:token@host)",
            "name it in credentialsSecret",
        ],
        id="packageIndex-url-with-credentials",
    ),
    pytest.param(
        kubeflow(
            lambda m: replicas_of(m)["Worker"]["template"]["spec"]["containers"].append(
                container(image="sidecar:1")
            )
        ),
        ["spec.tfReplicaSpecs.Worker.template.spec.containers[1]: Duplicate value"],
        id="two-containers-of-one-name",
    ),
    pytest.param(
        kubeflow(set_container(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])),
        ["spec.tfReplicaSpecs.Worker.template.spec.containers[0].env[1]: Duplicate value"],
        id="two-env-vars-of-one-name",
    ),
    pytest.param(
        estimator(remover("spec", "distribution", "backend")),
        ["spec.distribution.backend: Required value"],
        id="distribution-without-backend",
    ),
    pytest.param(
        estimator(setter("spec", "source", value={"persistentVolumeClaim": {"subPath": "code"}})),
        ["spec.source.persistentVolumeClaim.claimName: Required value"],
        id="volume-source-without-claimName",
    ),
]

REFUSED_NAMES = {case.values[0]()["metadata"]["name"] for case in CASES}


@pytest.fixture(scope="module")
def refusal_namespace(core: k8s.CoreV1Api) -> Iterator[str]:
    """One namespace for every refusal: no job may ever appear in it."""
    name = f"invalid-manifests-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"tfjob.dev/test": "true"}}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


def apply(kubectl: Any, namespace: str, manifest: Manifest) -> Any:
    return kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)


def jobs_in(api_client: k8s.ApiClient, namespace: str) -> list[str]:
    listed = k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    return [job["metadata"]["name"] for job in listed["items"]]


@pytest.mark.parametrize(("build", "expected"), CASES)
def test_invalid_manifest_is_refused_naming_the_field(
    kubectl: Any,
    api_client: k8s.ApiClient,
    refusal_namespace: str,
    build: Callable[[], Manifest],
    expected: list[str],
) -> None:
    manifest = build()
    result = apply(kubectl, refusal_namespace, manifest)
    output = f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    if result.returncode == 0:
        # Wrongly accepted: remove the job so the cases after this one still start clean.
        kubectl("delete", "-n", refusal_namespace, "-f", "-", input=yaml.safe_dump(manifest))
        pytest.fail(f"accepted:\n{yaml.safe_dump(manifest)}\n{output}")
    assert "TensorFlowJob" in result.stderr, output
    for fragment in expected:
        assert fragment in result.stderr, f"{fragment!r} not in kubectl's error:\n{output}"
    assert jobs_in(api_client, refusal_namespace) == []


def test_no_refused_job_exists(api_client: k8s.ApiClient, refusal_namespace: str) -> None:
    """Runs after the cases above (same module, defined later): none of them left a job."""
    custom = k8s.CustomObjectsApi(api_client)
    for name in sorted(REFUSED_NAMES):
        with pytest.raises(ApiException) as missing:
            custom.get_namespaced_custom_object(GROUP, VERSION, refusal_namespace, PLURAL, name)
        assert missing.value.status == 404, name
    assert jobs_in(api_client, refusal_namespace) == []


# ----- positive controls: the manifests the cases start from are accepted -----------------------


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(kubeflow_form(), id="kubeflow-form"),
        pytest.param(estimator_form(), id="estimator-form"),
        pytest.param(
            kubeflow(
                setter("spec", "checkpoint", value={"persistentVolumeClaim": {"claimName": "c"}})
            )(),
            id="kubeflow-form-with-checkpoint",
        ),
        pytest.param(
            estimator(
                lambda m: m["spec"].update(
                    # Not null for a flag alone: client-side `kubectl apply` drops null values
                    # before the API server sees them (server-side apply keeps them).
                    scriptParams={"--no-cuda": "", "--fp16-allreduce": True, "--lr": 0.01},
                    arguments=["--model", "MobileNetV2", "data/"],
                )
            )(),
            id="estimator-form-bare-flags-and-arguments",
        ),
        pytest.param(
            kubeflow(
                lambda m: worker(m)["template"]["spec"].update(
                    resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "one-a100"}],
                    securityContext={"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
                    topologySpreadConstraints=[
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                        }
                    ],
                    containers=[container(resources={"claims": [{"name": "gpu"}]})],
                )
            )(),
            id="kubeflow-form-dra-claims-and-security-context",
        ),
        pytest.param(
            # What `tfjob-operator compile` prints for shipped source and pipPackages: the
            # Kubeflow form may carry the tfjob- names that compiling gave it.
            kubeflow(
                lambda m: worker(m)["template"]["spec"].update(
                    initContainers=[
                        {"name": "tfjob-source", "image": "t:1", "command": ["python"]},
                        {"name": "fetch-data", "image": "busybox:1", "args": ["true"]},
                    ],
                    volumes=[
                        {"name": "tfjob-packages", "emptyDir": {}},
                        {"name": "data", "configMap": {"name": "data", "optional": True}},
                    ],
                )
            )(),
            id="kubeflow-form-init-containers-and-volumes",
        ),
        pytest.param(kubeflow_form(NAME_54), id="kubeflow-form-longest-name"),
        pytest.param(
            # <52>-launcher-0 and <52>-worker-999 are both 63 long.
            estimator(horovod(NAME_54[:52], node_count=1000))(),
            id="mpi-longest-name-for-1000-nodes",
        ),
        pytest.param(
            kubeflow(with_replicas(Chief=replica(1), Worker=replica(2), PS=replica(1)))(),
            id="kubeflow-form-chief-worker-ps",
        ),
    ],
)
def test_valid_manifest_is_accepted(
    kubectl: Any, api_client: k8s.ApiClient, namespace: str, manifest: Manifest
) -> None:
    expected = copy.deepcopy(manifest)
    result = apply(kubectl, namespace, manifest)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    name = expected["metadata"]["name"]
    assert f"tensorflowjob.tfjob.dev/{name} created" in result.stdout
    stored = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    # Nothing was pruned: the server kept every field the cases above start from.
    assert stored["spec"] == expected["spec"]
    assert jobs_in(api_client, namespace) == [name]
