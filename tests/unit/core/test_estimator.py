"""The estimator form ("run train.py on 2 workers with GPUs") compiled into replica specs."""

from __future__ import annotations

from typing import Any

import pytest

from tfjob_operator.api.v1alpha1 import ReplicaSpecs, TensorFlowJobSpec
from tfjob_operator.core.builders import JobRef, desired_children
from tfjob_operator.core.estimator import (
    compile_replica_specs,
    compiled_job,
    script_arguments,
    trainer_command,
)
from tfjob_operator.settings import OperatorSettings

pytestmark = pytest.mark.timeout(10)

SETTINGS = OperatorSettings()
CPU_IMAGE = "tensorflow/tensorflow:2.21.0"
GPU_IMAGE = "tensorflow/tensorflow:2.21.0-gpu"


def job_spec(**fields: Any) -> TensorFlowJobSpec:
    return TensorFlowJobSpec.model_validate({"entryScript": "train.py", **fields})


def compiled(settings: OperatorSettings = SETTINGS, **fields: Any) -> dict[str, Any]:
    """The replica specs as they appear in YAML (what `tfjob-operator compile` prints)."""
    replica_specs = compile_replica_specs(job_spec(**fields), settings)
    return replica_specs.model_dump(by_alias=True, exclude_none=True, mode="json")


def built_pods(name: str, spec: TensorFlowJobSpec) -> dict[str, dict[str, Any]]:
    """The pods the builders make of the compiled spec, by name."""
    return desired_children(
        JobRef(name, "ml", "uid"),
        compile_replica_specs(spec, SETTINGS),
        node_pool=spec.node_pool,
        settings=SETTINGS,
    ).pods


def containers_of(replicas: dict[str, Any], replica_type: str) -> list[dict[str, Any]]:
    return replicas[replica_type]["template"]["spec"]["containers"]


# ----- script arguments and the trainer command -----------------------------------------------


def test_script_arguments_pass_values_and_true_flags_alone() -> None:
    params = {"--epochs": 5, "--verbose": True, "--dry-run": False, "--lr": 0.001, "--tag": "a b"}
    assert script_arguments(params) == [
        "--epochs",
        "5",
        "--verbose",
        "--lr",
        "0.001",
        "--tag",
        "a b",
    ]


def test_script_arguments_keep_zero_and_one_which_are_not_booleans() -> None:
    assert script_arguments({"--seed": 0, "--steps": 1, "--decay": 0.0}) == [
        "--seed",
        "0",
        "--steps",
        "1",
        "--decay",
        "0.0",
    ]


def test_string_true_is_a_value_not_a_flag() -> None:
    assert script_arguments({"--shuffle": "true"}) == ["--shuffle", "true"]


def test_empty_and_null_values_are_flags_alone_not_empty_arguments() -> None:
    """`--no-cuda: ''` once reached argparse as `--no-cuda ''`: "unrecognized arguments: ''"."""
    params = {"--no-cuda": "", "--fp16-allreduce": None, "--batch-size": 4}
    assert script_arguments(params) == ["--no-cuda", "--fp16-allreduce", "--batch-size", "4"]


def test_arguments_reach_the_script_in_order_after_the_named_parameters() -> None:
    spec = job_spec(
        scriptParams={"--seed": 7},
        arguments=["--model", "MobileNetV2", "--no-cuda", "data/", "--batch-size", "4"],
    )
    assert trainer_command(spec) == [
        "python", "train.py", "--seed", "7",
        "--model", "MobileNetV2", "--no-cuda", "data/", "--batch-size", "4",
    ]  # fmt: skip


def test_arguments_are_strings_as_a_containers_args() -> None:
    with pytest.raises(ValueError, match=r"arguments\.1"):
        job_spec(arguments=["--epochs", 5])


@pytest.mark.parametrize("params", [None, {}])
def test_no_script_arguments(params: dict[str, Any] | None) -> None:
    assert script_arguments(params) == []


def test_booleans_survive_the_api_model() -> None:
    spec = job_spec(scriptParams={"--epochs": 2, "--verbose": True, "--dry-run": False, "--n": 1})
    assert trainer_command(spec) == ["python", "train.py", "--epochs", "2", "--verbose", "--n", "1"]


def test_trainer_command_without_pip_packages_runs_the_script_directly() -> None:
    assert trainer_command(job_spec(entryScript="src/train.py")) == ["python", "src/train.py"]


def test_pip_packages_leave_the_command_to_the_packages_layer() -> None:
    """No shell around the script: the install is an init container (see test_packages)."""
    spec = job_spec(pipPackages=["pandas"], scriptParams={"--name": "run a"})
    assert trainer_command(spec) == ["python", "train.py", "--name", "run a"]


# ----- compile_replica_specs: the three shapes --------------------------------------------------


def test_single_node_job_is_one_worker() -> None:
    assert compiled(scriptParams={"--epochs": 3}) == {
        "Worker": {
            "replicas": 1,
            "restartPolicy": "ExitCode",
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "tensorflow",
                            "image": "tensorflow/tensorflow:2.21.0",
                            "command": ["python", "train.py", "--epochs", "3"],
                        }
                    ]
                }
            },
        }
    }


def test_single_node_gpu_job_gets_the_gpu_image_and_one_gpu_by_default() -> None:
    assert compiled(useGpu=True) == {
        "Worker": {
            "replicas": 1,
            "restartPolicy": "ExitCode",
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "tensorflow",
                            "image": "tensorflow/tensorflow:2.21.0-gpu",
                            "command": ["python", "train.py"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                }
            },
        }
    }


def test_multi_worker_mirrored_is_worker_count_workers() -> None:
    replicas = compiled(
        useGpu=True,
        gpuCount=2,
        distribution={"backend": "multiWorkerMirrored", "workerCount": 3},
    )
    assert replicas == {
        "Worker": {
            "replicas": 3,
            "restartPolicy": "ExitCode",
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "tensorflow",
                            "image": "tensorflow/tensorflow:2.21.0-gpu",
                            "command": ["python", "train.py"],
                            "resources": {"limits": {"nvidia.com/gpu": "2"}},
                        }
                    ]
                }
            },
        }
    }


def test_multi_worker_mirrored_defaults_to_one_worker() -> None:
    replicas = compiled(distribution={"backend": "multiWorkerMirrored"})
    assert list(replicas) == ["Worker"]
    assert replicas["Worker"]["replicas"] == 1


def test_parameter_server_is_a_chief_workers_and_parameter_servers() -> None:
    replicas = compiled(
        useGpu=True,
        gpuCount=4,
        distribution={"backend": "parameterServer", "workerCount": 2, "parameterServerCount": 3},
    )
    cpu_container = {
        "name": "tensorflow",
        "image": "tensorflow/tensorflow:2.21.0-gpu",
        "command": ["python", "train.py"],
    }
    assert replicas == {
        "Chief": {
            "replicas": 1,
            "restartPolicy": "ExitCode",
            "template": {"spec": {"containers": [cpu_container]}},
        },
        "Worker": {
            "replicas": 2,
            "restartPolicy": "ExitCode",
            "template": {
                "spec": {
                    "containers": [
                        {**cpu_container, "resources": {"limits": {"nvidia.com/gpu": "4"}}}
                    ]
                }
            },
        },
        "PS": {
            "replicas": 3,
            "restartPolicy": "ExitCode",
            "template": {"spec": {"containers": [cpu_container]}},
        },
    }


def test_parameter_server_count_defaults_to_one() -> None:
    replicas = compiled(distribution={"backend": "parameterServer", "workerCount": 2})
    assert {t: r["replicas"] for t, r in replicas.items()} == {"Chief": 1, "Worker": 2, "PS": 1}


def test_without_use_gpu_nobody_gets_gpus() -> None:
    replicas = compiled(distribution={"backend": "parameterServer", "workerCount": 2})
    for replica_type in ("Chief", "Worker", "PS"):
        (container,) = containers_of(replicas, replica_type)
        assert "resources" not in container
        assert container["image"] == CPU_IMAGE


def test_every_replica_runs_the_same_entry_script() -> None:
    replicas = compiled(
        scriptParams={"--steps": 100},
        distribution={"backend": "parameterServer", "workerCount": 2},
    )
    commands = {t: containers_of(replicas, t)[0]["command"] for t in replicas}
    assert commands == {
        "Chief": ["python", "train.py", "--steps", "100"],
        "Worker": ["python", "train.py", "--steps", "100"],
        "PS": ["python", "train.py", "--steps", "100"],
    }


def test_kubeflow_form_is_returned_as_is() -> None:
    spec = TensorFlowJobSpec.model_validate(
        {
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": 2,
                    "restartPolicy": "OnFailure",
                    "template": {"spec": {"containers": [{"name": "tensorflow", "image": "x"}]}},
                }
            }
        }
    )
    assert compile_replica_specs(spec, SETTINGS) is spec.tf_replica_specs


def test_compile_returns_replica_specs() -> None:
    assert isinstance(compile_replica_specs(job_spec(), SETTINGS), ReplicaSpecs)


# ----- images ----------------------------------------------------------------------------------


def test_default_images_come_from_settings() -> None:
    settings = OperatorSettings(default_image="reg.example/tf:cpu", default_gpu_image="reg/tf:gpu")
    cpu = compiled(settings)
    gpu = compiled(settings, useGpu=True)
    assert containers_of(cpu, "Worker")[0]["image"] == "reg.example/tf:cpu"
    assert containers_of(gpu, "Worker")[0]["image"] == "reg/tf:gpu"


@pytest.mark.parametrize("use_gpu", [False, True])
def test_the_jobs_image_wins_over_the_defaults(use_gpu: bool) -> None:
    replicas = compiled(
        image="me/trainer:1",
        useGpu=use_gpu,
        distribution={"backend": "parameterServer"},
    )
    assert {containers_of(replicas, t)[0]["image"] for t in replicas} == {"me/trainer:1"}


# ----- environment variables and the partial template --------------------------------------


def test_environment_variables_go_to_the_trainer() -> None:
    replicas = compiled(environmentVariables={"DATA_DIR": "/data", "LOG_LEVEL": "info"})
    assert containers_of(replicas, "Worker")[0]["env"] == [
        {"name": "DATA_DIR", "value": "/data"},
        {"name": "LOG_LEVEL", "value": "info"},
    ]


PARTIAL_TEMPLATE = {
    "metadata": {"labels": {"team": "vision"}, "annotations": {"owner": "alice"}},
    "spec": {
        "containers": [
            {
                "name": "tensorflow",
                "env": [{"name": "A", "value": "override"}, {"name": "C", "value": "3"}],
                "resources": {"limits": {"memory": "8Gi"}, "requests": {"cpu": "2"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            {"name": "log-shipper", "image": "fluent/fluent-bit:3"},
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}}],
        "nodeSelector": {"disk": "ssd"},
        "serviceAccountName": "trainer",
    },
}


def test_partial_template_is_merged_into_every_replica() -> None:
    replicas = compiled(
        useGpu=True,
        gpuCount=2,
        environmentVariables={"A": "1", "B": "2"},
        template=PARTIAL_TEMPLATE,
        distribution={"backend": "parameterServer", "workerCount": 1},
    )
    sidecar = {"name": "log-shipper", "image": "fluent/fluent-bit:3"}
    env = [
        {"name": "A", "value": "override"},
        {"name": "B", "value": "2"},
        {"name": "C", "value": "3"},
    ]
    mounts = [{"name": "data", "mountPath": "/data"}]
    assert replicas["Worker"]["template"] == {
        "metadata": {"labels": {"team": "vision"}, "annotations": {"owner": "alice"}},
        "spec": {
            "containers": [
                {
                    "name": "tensorflow",
                    "image": "tensorflow/tensorflow:2.21.0-gpu",
                    "command": ["python", "train.py"],
                    "env": env,
                    "resources": {
                        "limits": {"nvidia.com/gpu": "2", "memory": "8Gi"},
                        "requests": {"cpu": "2"},
                    },
                    "volumeMounts": mounts,
                },
                sidecar,
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}}],
            "nodeSelector": {"disk": "ssd"},
            "serviceAccountName": "trainer",
        },
    }
    for replica_type in ("Chief", "PS"):
        template = replicas[replica_type]["template"]
        trainer, other = template["spec"]["containers"]
        assert trainer["env"] == env
        assert trainer["resources"] == {"limits": {"memory": "8Gi"}, "requests": {"cpu": "2"}}
        assert trainer["volumeMounts"] == mounts
        assert other == sidecar
        assert template["spec"]["volumes"] == PARTIAL_TEMPLATE["spec"]["volumes"]
        assert template["metadata"] == PARTIAL_TEMPLATE["metadata"]


def test_template_without_a_trainer_container_keeps_the_generated_one() -> None:
    template = {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}
    replicas = compiled(template=template, environmentVariables={"X": "1"})
    assert containers_of(replicas, "Worker") == [
        {
            "name": "tensorflow",
            "image": CPU_IMAGE,
            "command": ["python", "train.py"],
            "env": [{"name": "X", "value": "1"}],
        },
        {"name": "sidecar", "image": "busybox"},
    ]


def test_template_with_only_pod_fields_adds_them() -> None:
    template = {"spec": {"tolerations": [{"key": "spot", "operator": "Exists"}]}}
    replicas = compiled(template=template)
    assert replicas["Worker"]["template"]["spec"] == {
        "containers": [
            {"name": "tensorflow", "image": CPU_IMAGE, "command": ["python", "train.py"]}
        ],
        "tolerations": [{"key": "spot", "operator": "Exists"}],
    }


def test_template_env_is_added_when_the_job_has_no_environment_variables() -> None:
    template = {
        "spec": {"containers": [{"name": "tensorflow", "env": [{"name": "A", "value": "1"}]}]}
    }
    replicas = compiled(template=template)
    assert containers_of(replicas, "Worker")[0]["env"] == [{"name": "A", "value": "1"}]


def test_template_trainer_may_override_the_image() -> None:
    template = {"spec": {"containers": [{"name": "tensorflow", "image": "me/custom:1"}]}}
    replicas = compiled(template=template, useGpu=True)
    (container,) = containers_of(replicas, "Worker")
    assert container["image"] == "me/custom:1"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}


def test_template_sidecar_gets_no_gpus() -> None:
    replicas = compiled(
        useGpu=True, template={"spec": {"containers": [{"name": "sidecar", "image": "s"}]}}
    )
    _, sidecar = containers_of(replicas, "Worker")
    assert "resources" not in sidecar


# ----- with the builders: GPUs only on workers ---------------------------------------------


def test_compiled_parameter_server_job_places_only_workers_on_the_gpu_pool() -> None:
    spec = job_spec(
        useGpu=True,
        gpuCount=4,
        nodePool="gpu-t4",
        distribution={"backend": "parameterServer", "workerCount": 2},
    )
    pods = built_pods("t4", spec)
    placed = {name: pod["spec"].get("nodeSelector") for name, pod in pods.items()}
    assert placed == {
        "t4-chief-0": None,
        "t4-worker-0": {"tfjob.dev/node-pool": "gpu-t4"},
        "t4-worker-1": {"tfjob.dev/node-pool": "gpu-t4"},
        "t4-ps-0": None,
    }
    assert pods["t4-chief-0"]["metadata"]["labels"]["tfjob.dev/job-role"] == "chief"


# ----- compiled_job ------------------------------------------------------------------------------


MWMS_JOB = {
    "apiVersion": "tfjob.dev/v1alpha1",
    "kind": "TensorFlowJob",
    "metadata": {"name": "mnist-mwms", "namespace": "ml"},
    "spec": {
        "entryScript": "train.py",
        "scriptParams": {"--epochs": 2, "--batch-size": 64},
        "distribution": {"backend": "multiWorkerMirrored", "workerCount": 2},
        "runPolicy": {"cleanPodPolicy": "All"},
        "successPolicy": "AllWorkers",
        "nodePool": "gpu-t4",
    },
    "status": {"state": "Running"},
}


def test_compiled_job_is_the_kubeflow_form_of_the_same_job() -> None:
    assert compiled_job(MWMS_JOB, SETTINGS) == {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": "mnist-mwms", "namespace": "ml"},
        "spec": {
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": 2,
                    "restartPolicy": "ExitCode",
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "tensorflow",
                                    "image": "tensorflow/tensorflow:2.21.0",
                                    "command": [
                                        "python",
                                        "train.py",
                                        "--epochs",
                                        "2",
                                        "--batch-size",
                                        "64",
                                    ],
                                }
                            ]
                        }
                    },
                }
            },
            "runPolicy": {"cleanPodPolicy": "All"},
            "successPolicy": "AllWorkers",
            "nodePool": "gpu-t4",
        },
    }


def test_compiled_job_leaves_out_absent_run_fields() -> None:
    job = {"apiVersion": "tfjob.dev/v1alpha1", "kind": "TensorFlowJob", "metadata": {"name": "j"}}
    job["spec"] = {"entryScript": "train.py"}
    assert list(compiled_job(job, SETTINGS)["spec"]) == ["tfReplicaSpecs"]


def test_compiling_a_compiled_job_changes_nothing() -> None:
    once = compiled_job(MWMS_JOB, SETTINGS)
    assert compiled_job(once, SETTINGS) == once


def test_compiled_job_validates_as_a_kubeflow_form_spec() -> None:
    spec = TensorFlowJobSpec.model_validate(compiled_job(MWMS_JOB, SETTINGS)["spec"])
    assert spec.entry_script is None
    assert spec.tf_replica_specs is not None
    assert spec.tf_replica_specs.worker is not None
    assert spec.tf_replica_specs.worker.replicas == 2


# ----- GPUs through Dynamic Resource Allocation ---------------------------------------------


DRA_TEMPLATE = {
    "spec": {
        "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-a100"}],
        "containers": [
            {
                "name": "tensorflow",
                "resources": {"claims": [{"name": "gpu"}], "limits": {"memory": "8Gi"}},
            }
        ],
    }
}


def test_gpus_claimed_through_dra_are_on_every_pod_and_left_to_the_scheduler() -> None:
    """resources.claims once crashed every pass (a list merged as a map); the claims are kept
    as written on each pod, and the nvidia.com/gpu logic (node pool, limits) leaves them be."""
    spec = job_spec(
        nodePool="gpu-t4",
        template=DRA_TEMPLATE,
        distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
    )
    pods = built_pods("dra", spec)
    assert sorted(pods) == ["dra-worker-0", "dra-worker-1"]
    for pod in pods.values():
        assert pod["spec"]["resourceClaims"] == DRA_TEMPLATE["spec"]["resourceClaims"]
        (trainer,) = pod["spec"]["containers"]
        assert trainer["resources"] == {"claims": [{"name": "gpu"}], "limits": {"memory": "8Gi"}}
        assert "nodeSelector" not in pod["spec"]  # the claim's devices decide the node


def test_use_gpu_and_dra_claims_both_reach_the_pod_as_asked() -> None:
    """useGpu asks the device plugin (nvidia.com/gpu), a claim asks DRA: each as written."""
    (worker,) = compiled(useGpu=True, template=DRA_TEMPLATE)["Worker"]["template"]["spec"][
        "containers"
    ]
    assert worker["resources"]["claims"] == [{"name": "gpu"}]
    assert worker["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "8Gi"}


def test_a_claim_the_pod_does_not_name_fails_the_job_naming_the_field() -> None:
    from tfjob_operator.core.compile import compile_job

    template = {
        "spec": {"containers": [{"name": "tensorflow", "resources": {"claims": [{"name": "gpu"}]}}]}
    }
    compiled = compile_job({"entryScript": "train.py", "template": template}, SETTINGS)
    assert compiled.problem is not None
    assert compiled.problem.reason == "InvalidSpec"
    assert (
        "spec.template.spec: containers[0].resources.claims[0].name: 'gpu' is not one of the "
        "pod's resourceClaims"
    ) in compiled.problem.message
