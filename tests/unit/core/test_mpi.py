"""MPI jobs, pure parts: hostfile formats, launcher environment per MPI, SSH keys, the mpi
backend compiled into Launcher and Worker replicas, and the pods built from them."""

from __future__ import annotations

from typing import Any

import pytest

from tfjob_operator.api.v1alpha1 import (
    LauncherCreation,
    MPIImplementation,
    MPISpec,
    PartialPodTemplateSpec,
    ReplicaType,
    TensorFlowJobSpec,
)
from tfjob_operator.core import mpi
from tfjob_operator.core.builders import JobRef, desired_children, mpi_hostfile_config_map
from tfjob_operator.core.decide import launcher_may_start
from tfjob_operator.core.estimator import compile_replica_specs, effective_mpi
from tfjob_operator.core.observed import PodObservation
from tfjob_operator.settings import OperatorSettings

pytestmark = pytest.mark.timeout(10)

HOSTS = ["hvd-worker-0.hvd.ml.svc.cluster.local", "hvd-worker-1.hvd.ml.svc.cluster.local"]
JOB = JobRef("hvd", "ml", "uid-1")
SETTINGS = OperatorSettings()


@pytest.mark.parametrize(
    ("implementation", "expected"),
    [
        (
            MPIImplementation.OPEN_MPI,
            "hvd-worker-0.hvd.ml.svc.cluster.local slots=2\n"
            "hvd-worker-1.hvd.ml.svc.cluster.local slots=2\n",
        ),
        (
            MPIImplementation.INTEL,
            "hvd-worker-0.hvd.ml.svc.cluster.local:2\nhvd-worker-1.hvd.ml.svc.cluster.local:2\n",
        ),
        (
            MPIImplementation.MPICH,
            "hvd-worker-0.hvd.ml.svc.cluster.local:2\nhvd-worker-1.hvd.ml.svc.cluster.local:2\n",
        ),
    ],
)
def test_hostfile_format_per_implementation(
    implementation: MPIImplementation, expected: str
) -> None:
    assert mpi.hostfile(HOSTS, 2, implementation) == expected


SSH = (
    "-i /etc/tfjob/ssh/ssh-privatekey -p 2222 -o StrictHostKeyChecking=no "
    "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
)


@pytest.mark.parametrize(
    ("implementation", "expected"),
    [
        (
            MPIImplementation.OPEN_MPI,
            {
                "OMPI_MCA_orte_default_hostfile": "/etc/mpi/hostfile",
                "OMPI_MCA_plm_rsh_args": SSH,
                "OMPI_MCA_orte_keep_fqdn_hostnames": "true",
                "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "NVIDIA_VISIBLE_DEVICES": "",
                "CUDA_VISIBLE_DEVICES": "",
            },
        ),
        (
            MPIImplementation.INTEL,
            {
                "I_MPI_HYDRA_HOST_FILE": "/etc/mpi/hostfile",
                "I_MPI_HYDRA_BOOTSTRAP": "ssh",
                "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS": SSH,
                "NVIDIA_VISIBLE_DEVICES": "",
                "CUDA_VISIBLE_DEVICES": "",
            },
        ),
        (
            MPIImplementation.MPICH,
            {
                "HYDRA_HOST_FILE": "/etc/mpi/hostfile",
                "HYDRA_LAUNCHER": "ssh",
                "HYDRA_LAUNCHER_EXTRA_ARGS": SSH,
                "NVIDIA_VISIBLE_DEVICES": "",
                "CUDA_VISIBLE_DEVICES": "",
            },
        ),
    ],
)
def test_launcher_env_per_implementation(
    implementation: MPIImplementation, expected: dict[str, str]
) -> None:
    env = mpi.launcher_env(MPISpec(implementation=implementation), hide_gpus=True)
    assert {e["name"]: e["value"] for e in env} == expected


def test_launcher_that_is_also_a_worker_keeps_its_gpus() -> None:
    names = {e["name"] for e in mpi.launcher_env(MPISpec(), hide_gpus=False)}
    assert "NVIDIA_VISIBLE_DEVICES" not in names


def mpi_spec(**distribution: object) -> TensorFlowJobSpec:
    return TensorFlowJobSpec.model_validate(
        {
            "entryScript": "train_horovod.py",
            "scriptParams": {"--epochs": 3},
            "useGpu": True,
            "distribution": {"backend": "mpi", **distribution},
        }
    )


def mpi_pods(spec: TensorFlowJobSpec, **options: object) -> dict[str, dict]:
    """The pods of an MPI job built from ``spec``, its key Secret named."""
    return desired_children(
        JOB,
        compile_replica_specs(spec, SETTINGS),
        node_pool=None,
        settings=SETTINGS,
        mpi=effective_mpi(spec),
        ssh_secret="hvd-ssh-k4x9z",
        **options,  # type: ignore[arg-type]
    ).pods


def test_mpi_backend_compiles_to_launcher_and_workers() -> None:
    spec = mpi_spec(nodeCount=2, processCountPerNode=4)
    replicas = dict(compile_replica_specs(spec, SETTINGS).items())
    assert set(replicas) == {ReplicaType.LAUNCHER, ReplicaType.WORKER}
    assert replicas[ReplicaType.WORKER].replicas == 2
    launcher = replicas[ReplicaType.LAUNCHER].template.spec.containers[0]
    assert launcher.command == [
        "mpirun",
        "-np",
        "8",
        "-bind-to",
        "none",
        "-map-by",
        "slot",
        "-x",
        "PATH",
        "-x",
        "TF_USE_LEGACY_KERAS=1",
        "python",
        "train_horovod.py",
        "--epochs",
        "3",
    ]
    assert launcher.image == SETTINGS.default_horovod_image
    assert launcher.command[:2] == ["mpirun", "-np"]
    assert launcher.resources is None
    worker = replicas[ReplicaType.WORKER].template.spec.containers[0]
    assert worker.resources.limits == {"nvidia.com/gpu": "4"}
    assert worker.command[:2] == ["/bin/sh", "-c"]
    assert effective_mpi(spec) == MPISpec(slots_per_worker=4)


def test_mpi_pods_hostfile_and_labels() -> None:
    spec = mpi_spec(nodeCount=2)
    pods = mpi_pods(spec)
    assert set(pods) == {"hvd-launcher-0", "hvd-worker-0", "hvd-worker-1"}
    hostfile = mpi_hostfile_config_map(
        JOB, compile_replica_specs(spec, SETTINGS), effective_mpi(spec), SETTINGS
    )
    assert hostfile["metadata"]["name"] == "hvd-mpi"
    assert hostfile["data"]["hostfile"] == mpi.hostfile(HOSTS, 1, MPIImplementation.OPEN_MPI)
    worker = pods["hvd-worker-1"]
    assert worker["metadata"]["labels"]["tfjob.dev/job-role"] == "worker"
    container = worker["spec"]["containers"][0]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 2222}
    assert {"name": "ssh", "containerPort": 2222, "protocol": "TCP"} in container["ports"]
    assert not any(e["name"] == "TF_CONFIG" for e in container.get("env", []))
    launcher = pods["hvd-launcher-0"]
    assert launcher["metadata"]["labels"]["tfjob.dev/job-role"] == "launcher"
    mounts = {m["name"]: m["mountPath"] for m in launcher["spec"]["containers"][0]["volumeMounts"]}
    assert mounts == {"tfjob-ssh": "/etc/tfjob/ssh", "tfjob-mpi-hostfile": "/etc/mpi"}
    assert "tolerations" not in launcher["spec"]  # no GPU: no GPU node


def test_every_variable_the_job_sets_is_forwarded_to_the_ranks() -> None:
    # The ranks start under the workers' sshd, with a fresh login environment: a variable
    # reaches them only if the launcher's mpirun names it.
    spec = TensorFlowJobSpec.model_validate(
        {
            "entryScript": "train_horovod.py",
            "environmentVariables": {"LEARNING_RATE": "0.1", "PATH": "/opt/venv/bin:/bin"},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "tensorflow",
                            "env": [
                                {
                                    "name": "WANDB_KEY",
                                    "valueFrom": {"secretKeyRef": {"name": "w", "key": "k"}},
                                }
                            ],
                        }
                    ]
                }
            },
            "distribution": {"backend": "mpi", "nodeCount": 2},
        }
    )
    launcher = dict(compile_replica_specs(spec, SETTINGS).items())[
        ReplicaType.LAUNCHER
    ].template.spec
    command = launcher.containers[0].command
    exported = [command[i + 1] for i, part in enumerate(command) if part == "-x"]
    assert exported == ["PATH", "TF_USE_LEGACY_KERAS=1", "LEARNING_RATE", "WANDB_KEY"]


def test_the_default_horovod_image_runs_as_its_user_who_can_read_the_key() -> None:
    pods = mpi_pods(mpi_spec(nodeCount=2))
    for name in ("hvd-launcher-0", "hvd-worker-0"):
        pod_spec = pods[name]["spec"]
        assert pod_spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
        }
        (key,) = [v for v in pod_spec["volumes"] if v["name"] == "tfjob-ssh"]
        assert key["secret"]["defaultMode"] == 0o440  # root:1000 r--r-----


@pytest.mark.parametrize(
    ("template_context", "expected_user", "mode"),
    [
        # What a restricted namespace makes every job say: the image's user goes in beside it.
        ({"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, 1000, 0o440),
        ({"runAsUser": 2000, "runAsGroup": 2000}, 2000, 0o440),  # named: the template's
    ],
)
def test_a_template_securitycontext_keeps_the_default_horovod_images_user_who_reads_the_key(
    template_context: dict[str, Any], expected_user: int, mode: int
) -> None:
    """Once the template had a securityContext the image's user was not said: the key went
    0600 to root, and the image's sshd and mpirun (uid 1000) could not read it."""
    spec = mpi_spec(nodeCount=2).model_copy(
        update={
            "template": PartialPodTemplateSpec.model_validate(
                {"spec": {"securityContext": template_context}}
            )
        }
    )
    pods = mpi_pods(spec)
    for name in ("hvd-launcher-0", "hvd-worker-0"):
        pod_spec = pods[name]["spec"]
        context = pod_spec["securityContext"]
        assert context["runAsUser"] == expected_user
        assert context["fsGroup"] == expected_user
        assert {k: context[k] for k in template_context} == template_context
        (key,) = [v for v in pod_spec["volumes"] if v["name"] == "tfjob-ssh"]
        assert key["secret"]["defaultMode"] == mode


def test_an_image_of_the_users_own_is_left_to_run_as_it_says() -> None:
    own_image = mpi_spec(nodeCount=1).model_copy(update={"image": "me/horovod:1"})
    root_default = OperatorSettings(default_horovod_image_user=None)
    for spec, settings in ((own_image, SETTINGS), (mpi_spec(nodeCount=1), root_default)):
        replicas = dict(compile_replica_specs(spec, settings).items())
        for replica in replicas.values():
            template = replica.template.model_dump(by_alias=True, exclude_none=True)
            assert "securityContext" not in template["spec"]


@pytest.mark.parametrize(
    ("pod_context", "container_context", "mode", "fs_group"),
    [
        ({}, {}, 0o600, None),  # root (or unknown): ssh wants its key 0600
        ({"runAsUser": 0}, {}, 0o600, None),
        ({"runAsUser": 1000}, {}, 0o440, 1000),
        ({"runAsUser": 1000, "runAsGroup": 3000}, {}, 0o440, 3000),
        ({}, {"runAsUser": 1001, "runAsGroup": 1001}, 0o440, 1001),
        ({"runAsUser": 1000}, {"runAsUser": 0}, 0o600, None),  # the container's wins
        ({"runAsUser": 1000, "fsGroup": 5000}, {}, 0o440, 5000),  # the user's fsGroup stays
    ],
)
def test_the_ssh_key_is_readable_by_the_user_the_pod_runs_as(
    pod_context: dict[str, int], container_context: dict[str, int], mode: int, fs_group: int | None
) -> None:
    pod_spec: dict = {"containers": [{"name": "tensorflow"}]}
    if pod_context:
        pod_spec["securityContext"] = dict(pod_context)
    container = pod_spec["containers"][0]
    if container_context:
        container["securityContext"] = container_context
    mpi.decorate_worker(pod_spec, container, "hvd-ssh-uid", MPISpec())
    (key,) = pod_spec["volumes"]
    assert key["secret"] == {"secretName": "hvd-ssh-uid", "defaultMode": mode}
    assert (pod_spec.get("securityContext") or {}).get("fsGroup") == fs_group


def test_launcher_is_left_out_until_allowed() -> None:
    spec = mpi_spec(nodeCount=2)
    pods = mpi_pods(spec, launcher_allowed=False)
    assert set(pods) == {"hvd-worker-0", "hvd-worker-1"}


def pod(name: str, replica_type: str, index: int, *, ready: bool) -> PodObservation:
    return PodObservation.from_pod(
        {
            "metadata": {
                "name": name,
                "labels": {
                    "tfjob.dev/replica-type": replica_type,
                    "tfjob.dev/replica-index": str(index),
                },
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
    )


def test_launcher_may_start_once_every_worker_is_ready() -> None:
    replicas = compile_replica_specs(mpi_spec(nodeCount=2), SETTINGS)
    wait = MPISpec()
    one_ready = [pod("w0", "worker", 0, ready=True), pod("w1", "worker", 1, ready=False)]
    both_ready = [pod("w0", "worker", 0, ready=True), pod("w1", "worker", 1, ready=True)]
    assert not launcher_may_start(wait, replicas, one_ready)
    assert launcher_may_start(wait, replicas, both_ready)
    # Started once, it stays wanted even if a worker turns unready.
    assert launcher_may_start(wait, replicas, [*one_ready, pod("l", "launcher", 0, ready=True)])
    at_startup = MPISpec(launcher_creation=LauncherCreation.AT_STARTUP)
    assert launcher_may_start(at_startup, replicas, [])
