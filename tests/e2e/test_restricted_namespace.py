"""Every kind of job, for real, in a namespace run as shared GPU clusters run them: Pod Security
`restricted` enforced, a ResourceQuota that makes every container say its CPU and memory, and a
LimitRange that caps them. Each job's template says what `restricted` asks of its pods (a
non-root user, the runtime's seccomp profile, no privilege escalation, no capabilities) and its
trainer's resources; the containers the operator adds (shipped code, packages; the MPI
launcher's and workers' sshd) take them, and every job trains to Succeeded on the real node."""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE
from tests.support.index_pod import CREDENTIALS, credentials_secret, serve_in_cluster
from tests.support.install import shared_cluster_namespace
from tests.support.jobs import (
    apply,
    estimator_job,
    get_job,
    job_pods,
    kubeflow_job,
    wait_for_condition,
)
from tfjob_localcluster.control import WaitTimeout

pytestmark = [pytest.mark.timeout(420), pytest.mark.usefixtures("operator")]

RESOURCES = {
    "requests": {"cpu": "100m", "memory": "512Mi"},
    "limits": {"cpu": "2", "memory": "3Gi"},
}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_template(**container: Any) -> dict[str, Any]:
    """A pod template as `restricted` wants it, on the real node."""
    return {
        "spec": {
            **copy.deepcopy(ON_REAL_NODE),
            "securityContext": dict(POD_SECURITY),
            "containers": [
                {
                    "name": "tensorflow",
                    "securityContext": copy.deepcopy(CONTAINER_SECURITY),
                    "resources": copy.deepcopy(RESOURCES),
                    **container,
                }
            ],
        }
    }


@pytest.fixture
def restricted(core: k8s.CoreV1Api, namespace: str) -> str:
    shared_cluster_namespace(core, namespace, requests=("8", "32Gi"), limits=("32", "64Gi"))
    core.create_namespaced_limit_range(
        namespace,
        {
            "metadata": {"name": "team"},
            "spec": {
                "limits": [
                    {"type": "Container", "max": {"cpu": "4", "memory": "8Gi"}},
                ]
            },
        },
    )
    return namespace


@pytest.fixture
def index(core: k8s.CoreV1Api, namespace: str, trainer_image: str) -> Iterator[str]:
    """The team's package index, served from a namespace of its own (its pod is no training
    pod); its credentials Secret in the training namespace."""
    home = f"index-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": home, "labels": {"tfjob.dev/test": "true"}}})
    try:
        credentials_secret(core, namespace)
        yield serve_in_cluster(core, home, trainer_image)
    finally:
        core.delete_namespace(home)


def logs(kubectl: Any, namespace: str, pod: str) -> str:
    return kubectl("logs", "-n", namespace, pod).stdout


def succeeds(kubectl: Any, api_client: k8s.ApiClient, namespace: str, job: str) -> None:
    """Wait for the job to succeed; if it does not, fail with what its status and pods say."""
    try:
        wait_for_condition(api_client, namespace, job, "Succeeded", timeout=300)
    except WaitTimeout:
        status = get_job(api_client, namespace, job).get("status")
        pods = kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        tails = "".join(
            f"\n--- {name}\n"
            + kubectl(
                "logs", "-n", namespace, name, "--all-containers", "--tail=40", check=False
            ).stdout
            for name in re.findall(rf"^({job}-\S+)", pods, re.MULTILINE)
        )
        raise AssertionError(f"{job} did not succeed: {status}\n{pods}{tails}") from None


def admitted_as_restricted(core: k8s.CoreV1Api, namespace: str, job: str) -> None:
    """Every container of every pod of the job, the operator's included, says what the
    namespace demands (it was admitted: this says why)."""
    for pod in job_pods(core, namespace, job).values():
        assert pod.spec.security_context.run_as_non_root is True
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            where = f"{pod.metadata.name}/{container.name}"
            assert container.security_context.allow_privilege_escalation is False, where
            assert container.security_context.capabilities.drop == ["ALL"], where
            assert container.resources.requests["cpu"] == "100m", where
            assert container.resources.limits["memory"] == "3Gi", where


def test_an_estimator_job_ships_its_code_and_installs_packages_under_restricted(
    cluster: Any,
    kubectl: Any,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    restricted: str,
    index: str,
    tmp_path: Path,
) -> None:
    from tfjob_operator.client.sdk import Experiment, TensorFlow

    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "train.py").write_text(
        "import tfjob_demo_greeting\nprint(tfjob_demo_greeting.greet('restricted'), flush=True)\n"
    )
    run = Experiment("restricted", namespace=restricted, api=api_client).submit(
        TensorFlow(
            source_directory=str(folder),
            entry_script="train.py",
            pip_packages=["tfjob-demo-greeting==1.0.0"],
            pip_index_url=index,
            pip_index_secret=CREDENTIALS,
            pod_template=restricted_template(),
        )
    )
    succeeds(kubectl, api_client, restricted, run.name)
    pod = f"{run.name}-worker-0"
    assert "hello restricted from the team index" in logs(kubectl, restricted, pod)
    init = {c.name for c in core.read_namespaced_pod(pod, restricted).spec.init_containers}
    assert init == {"tfjob-source", "tfjob-packages"}
    admitted_as_restricted(core, restricted, run.name)


@pytest.mark.usefixtures("trainer_image")
def test_multi_worker_mirrored_trains_under_restricted(
    kubectl: Any, core: k8s.CoreV1Api, api_client: k8s.ApiClient, restricted: str
) -> None:
    job = estimator_job(
        "mwms",
        scriptParams={"--epochs": 2, "--steps-per-epoch": 5},
        distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
        successPolicy="AllWorkers",
        template=restricted_template(),
    )
    apply(kubectl, restricted, job)
    succeeds(kubectl, api_client, restricted, "mwms")
    for index in range(2):
        output = logs(kubectl, restricted, f"mwms-worker-{index}")
        assert f"worker {index}: replicas in sync 2" in output, output[-2000:]
    admitted_as_restricted(core, restricted, "mwms")


def test_a_parameter_server_job_with_an_evaluator_trains_under_restricted(
    kubectl: Any,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    restricted: str,
    trainer_image: str,
) -> None:
    command = ["python", "train.py", "--epochs", "2", "--steps-per-epoch", "5"]
    template = restricted_template(image=trainer_image, command=command)
    replica = {"replicas": 1, "restartPolicy": "Never", "template": template}
    replicas = {"Chief": replica, "PS": replica, "Worker": {**replica, "replicas": 2}}
    job = kubeflow_job(
        "pss", {**replicas, "Evaluator": replica}, runPolicy={"cleanPodPolicy": "None"}
    )
    apply(kubectl, restricted, job)
    succeeds(kubectl, api_client, restricted, "pss")
    chief = logs(kubectl, restricted, "pss-chief-0")
    assert re.search(r"chief: final loss \d+\.\d+", chief), chief[-2000:]
    admitted_as_restricted(core, restricted, "pss")


@pytest.mark.usefixtures("horovod_image")
def test_horovod_trains_over_ssh_under_restricted(
    kubectl: Any, core: k8s.CoreV1Api, api_client: k8s.ApiClient, restricted: str
) -> None:
    job = estimator_job(
        "hvd",
        entryScript="train_horovod.py",
        scriptParams={"--epochs": 1},
        distribution={"backend": "mpi", "nodeCount": 2, "processCountPerNode": 1},
        runPolicy={"cleanPodPolicy": "None"},
        template=restricted_template(),
    )
    apply(kubectl, restricted, job)
    succeeds(kubectl, api_client, restricted, "hvd")
    launcher = logs(kubectl, restricted, "hvd-launcher-0")
    ranks = sorted(re.findall(r"rank (\d) of 2 \(local \d of 1\) on (\S+)", launcher))
    assert ranks == [("0", "hvd-worker-0"), ("1", "hvd-worker-1")], launcher[-3000:]
    admitted_as_restricted(core, restricted, "hvd")
