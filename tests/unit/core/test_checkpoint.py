"""A job's checkpoint volume reaches every pod it runs, in either form, with the job's own
directory named for the script."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factories import SETTINGS, job, run
from tfjob_operator.api.v1alpha1 import TensorFlowJobSpec
from tfjob_operator.core.estimator import compile_replica_specs, compiled_job

KUBEFLOW = {
    "tfReplicaSpecs": {
        "Chief": {"template": {"spec": {"containers": [{"name": "tensorflow", "image": "t:1"}]}}},
        "Worker": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "tensorflow",
                            "image": "t:1",
                            "env": [{"name": "TFJOB_CHECKPOINT_DIR", "value": "/elsewhere"}],
                        },
                        {"name": "sidecar", "image": "s:1"},
                    ]
                }
            },
        },
    }
}
ESTIMATOR = {"entryScript": "train.py", "distribution": {"backend": "multiWorkerMirrored"}}
HOROVOD = {"entryScript": "train.py", "distribution": {"backend": "mpi", "nodeCount": 2}}


def created_pods(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    decision = run(job(spec, status={"sshSecret": "mnist-ssh-k4x9z"}))
    return {o["metadata"]["name"]: o for o in decision.create if o["kind"] == "Pod"}


def trainer(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "tensorflow")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("form", [KUBEFLOW, ESTIMATOR, HOROVOD], ids=["kubeflow", "mwms", "mpi"])
def test_every_pod_mounts_the_claim_and_is_told_the_jobs_own_directory(form: dict) -> None:
    spec = {**form, "checkpoint": {"persistentVolumeClaim": {"claimName": "ckpt"}}}
    pods = created_pods(spec)
    assert pods
    for name, pod in pods.items():
        volumes = [v for v in pod["spec"]["volumes"] if v["name"] == "tfjob-checkpoint"]
        assert volumes == [
            {"name": "tfjob-checkpoint", "persistentVolumeClaim": {"claimName": "ckpt"}}
        ], name
        container = trainer(pod)
        assert {"name": "tfjob-checkpoint", "mountPath": "/checkpoint"} in container[
            "volumeMounts"
        ], name
        env = [e for e in container["env"] if e["name"] == "TFJOB_CHECKPOINT_DIR"]
        # The job's name, so jobs sharing a claim never restore each other's training; the
        # template's own value gives way to the one the spec names.
        assert env == [{"name": "TFJOB_CHECKPOINT_DIR", "value": "/checkpoint/mnist"}], name
        for other in pod["spec"]["containers"]:
            if other["name"] != "tensorflow":
                assert "volumeMounts" not in other, name


@pytest.mark.timeout(10)
def test_the_mount_path_is_the_users_and_a_job_without_checkpoint_mounts_nothing() -> None:
    spec = {
        **ESTIMATOR,
        "checkpoint": {"persistentVolumeClaim": {"claimName": "c"}, "mountPath": "/mnt/ck/"},
    }
    for pod in created_pods(spec).values():
        container = trainer(pod)
        assert {"name": "tfjob-checkpoint", "mountPath": "/mnt/ck/"} in container["volumeMounts"]
        assert {"name": "TFJOB_CHECKPOINT_DIR", "value": "/mnt/ck/mnist"} in container["env"]
    for pod in created_pods(ESTIMATOR).values():
        assert "volumes" not in pod["spec"]
        assert "TFJOB_CHECKPOINT_DIR" not in str(pod)


@pytest.mark.timeout(10)
def test_adding_a_checkpoint_changes_the_pods_spec_hash() -> None:
    """The spec hash is how the operator sees pods made for an older spec."""
    before = created_pods(ESTIMATOR)
    after = created_pods({**ESTIMATOR, "checkpoint": {"persistentVolumeClaim": {"claimName": "c"}}})
    for name, pod in before.items():
        key = "tfjob.dev/spec-hash"
        assert pod["metadata"]["annotations"][key] != after[name]["metadata"]["annotations"][key]


@pytest.mark.timeout(10)
def test_mpirun_forwards_the_directory_to_every_rank() -> None:
    """The ranks start under the workers' sshd, with only what `-x` names."""

    def launcher_command(spec: dict[str, Any]) -> list[str]:
        replicas = compile_replica_specs(TensorFlowJobSpec.model_validate(spec), SETTINGS)
        template = replicas.launcher.template.model_dump(by_alias=True, exclude_none=True)
        return template["spec"]["containers"][0]["command"]

    command = launcher_command(
        {**HOROVOD, "checkpoint": {"persistentVolumeClaim": {"claimName": "c"}}}
    )
    assert command[command.index("TFJOB_CHECKPOINT_DIR") - 1] == "-x"
    assert "TFJOB_CHECKPOINT_DIR" not in launcher_command(HOROVOD)


@pytest.mark.timeout(10)
def test_the_kubeflow_form_a_job_compiles_to_keeps_its_checkpoint() -> None:
    """What `tfjob-operator compile` prints must run the same: the checkpoint goes along."""
    checkpoint = {"persistentVolumeClaim": {"claimName": "c"}, "mountPath": "/ck"}
    compiled = compiled_job(job({**ESTIMATOR, "checkpoint": checkpoint}), SETTINGS)
    assert compiled["spec"]["checkpoint"] == checkpoint
    assert "entryScript" not in compiled["spec"]
