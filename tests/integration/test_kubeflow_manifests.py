"""Kubeflow `kubeflow.org/v1` TFJobs run as TensorFlowJobs after changing only apiVersion and kind.

Each manifest under tests/manifests/kubeflow/ is written as Kubeflow users write them. The test
rewrites exactly two lines of its text, applies it with kubectl, and checks the pods, their
TF_CONFIG and GPU placement, then ends the deciding pod and waits for the job to succeed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.jobs import (
    apply,
    condition,
    get_job,
    tf_config,
    wait_for_condition,
    wait_for_job,
    wait_for_pods,
)
from tfjob_localcluster import control
from tfjob_localcluster.nodepools import NODE_POOL_LABEL
from tfjob_operator.api.v1alpha1 import API_VERSION, KIND

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("operator")]

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests" / "kubeflow"
DOMAIN = "cluster.local"
GPU = "nvidia.com/gpu"

API_VERSION_LINE = re.compile(r"^apiVersion: *[\"']?kubeflow\.org/v1[\"']? *$", re.MULTILINE)
KIND_LINE = re.compile(r"^kind: *[\"']?TFJob[\"']? *$", re.MULTILINE)


@dataclass(frozen=True)
class Expected:
    """What a manifest must become, written out by hand (not derived from the manifest)."""

    file: str
    job: str
    replicas: dict[str, int]  # TF_CONFIG task type -> pod count
    gpu_types: frozenset[str] = frozenset()  # task types whose pods request GPUs
    decider: str = ""  # the pod whose success makes the job succeed


CASES = [
    pytest.param(
        Expected(
            "mnist-single-worker.yaml",
            "mnist",
            {"worker": 1},
            decider="mnist-worker-0",
        ),
        id="mnist-single-worker",
    ),
    pytest.param(
        Expected(
            "dist-mnist-parameter-server.yaml",
            "dist-mnist-ps",
            {"chief": 1, "worker": 2, "ps": 1},
            decider="dist-mnist-ps-chief-0",
        ),
        id="chief-2-workers-1-ps",
    ),
    pytest.param(
        Expected(
            "multi-worker-gpu.yaml",
            "resnet50-mwms-gpu",
            {"worker": 2},
            gpu_types=frozenset({"worker"}),
            decider="resnet50-mwms-gpu-worker-0",
        ),
        id="2-gpu-workers",
    ),
]


def as_tensorflow_job(kubeflow_text: str) -> str:
    """Rewrite the apiVersion and kind lines, and nothing else."""
    text, versions = API_VERSION_LINE.subn("apiVersion: tfjob.dev/v1alpha1", kubeflow_text)
    text, kinds = KIND_LINE.subn("kind: TensorFlowJob", text)
    assert (versions, kinds) == (1, 1), "expected one top-level apiVersion and kind line each"
    return text


def host(job: str, namespace: str, pod: str) -> str:
    return f"{pod}.{job}.{namespace}.svc.{DOMAIN}:2222"


def pod_names(expected: Expected) -> set[str]:
    return {
        f"{expected.job}-{task_type}-{index}"
        for task_type, count in expected.replicas.items()
        for index in range(count)
    }


def test_conversion_changes_only_the_two_lines() -> None:
    files = sorted(MANIFESTS.glob("*.yaml"))
    assert {p.name for p in files} == {case.values[0].file for case in CASES}
    for path in files:
        original = path.read_text()
        converted = as_tensorflow_job(original)
        assert converted.count("\n") == original.count("\n"), path.name
        changed = [
            (before, after)
            for before, after in zip(original.splitlines(), converted.splitlines(), strict=True)
            if before != after
        ]
        assert [after for _, after in changed] == [
            "apiVersion: tfjob.dev/v1alpha1",
            "kind: TensorFlowJob",
        ], path.name
        kubeflow, tensorflow = yaml.safe_load(original), yaml.safe_load(converted)
        assert (kubeflow.pop("apiVersion"), kubeflow.pop("kind")) == ("kubeflow.org/v1", "TFJob")
        assert tensorflow == kubeflow | {"apiVersion": API_VERSION, "kind": KIND}


@pytest.mark.parametrize("expected", CASES)
def test_kubeflow_tfjob_runs_after_changing_api_version_and_kind(
    kubectl: Any,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    expected: Expected,
) -> None:
    apply(kubectl, namespace, as_tensorflow_job((MANIFESTS / expected.file).read_text()))
    names = pod_names(expected)
    pods = wait_for_pods(core, namespace, expected.job, names)

    # TF_CONFIG: absent for a single pod; otherwise the whole cluster, addressed by stable DNS.
    cluster = {
        task_type: [
            host(expected.job, namespace, f"{expected.job}-{task_type}-{index}")
            for index in range(count)
        ]
        for task_type, count in expected.replicas.items()
    }
    for task_type, count in expected.replicas.items():
        for index in range(count):
            pod = pods[f"{expected.job}-{task_type}-{index}"]
            if len(names) == 1:
                assert tf_config(pod) is None
            else:
                assert tf_config(pod) == {
                    "cluster": cluster,
                    "task": {"type": task_type, "index": index},
                    "environment": "cloud",
                }, pod.metadata.name

    # GPU pods land on a GPU node pool; the others stay off GPU nodes.
    for name, pod in pods.items():
        task_type = pod.metadata.labels["tfjob.dev/replica-type"]
        pool = core.read_node(pod.spec.node_name).metadata.labels[NODE_POOL_LABEL]
        trainer = next(c for c in pod.spec.containers if c.name == "tensorflow")
        if task_type in expected.gpu_types:
            assert trainer.resources.limits[GPU] == "1", name
            assert pool.startswith("gpu-"), f"{name} is on pool {pool}"
        else:
            assert GPU not in (trainer.resources.limits or {}), name
            assert not pool.startswith("gpu-"), f"{name} has no GPU but is on pool {pool}"

    wait_for_condition(api_client, namespace, expected.job, "Running")
    control.end_pod(core, namespace, expected.decider, exit_code=0)
    job = wait_for_condition(api_client, namespace, expected.job, "Succeeded")
    assert job["status"]["state"] == "Succeeded"
    assert condition(job, "Failed") is None
    decider_type = expected.decider.removeprefix(f"{expected.job}-").split("-")[0]
    replica_type = {"chief": "Chief", "worker": "Worker", "ps": "PS"}[decider_type]
    assert job["status"]["replicaStatuses"][replica_type]["succeeded"] == 1


def apply_manifest(kubectl: Any, namespace: str, file: str) -> None:
    apply(kubectl, namespace, as_tensorflow_job((MANIFESTS / file).read_text()))


def test_never_is_not_retried_whatever_backoff_limit_says(
    kubectl: Any, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """mnist-single-worker.yaml: restartPolicy Never with backoffLimit 2 and cleanPodPolicy
    None. As in Kubeflow, backoffLimit counts restarts, and Never makes none: the first failure
    fails the job, and its pod stays for its logs."""
    apply_manifest(kubectl, namespace, "mnist-single-worker.yaml")
    wait_for_pods(core, namespace, "mnist", {"mnist-worker-0"})
    control.end_pod(core, namespace, "mnist-worker-0", exit_code=137, reason="OOMKilled")
    job = wait_for_condition(api_client, namespace, "mnist", "Failed")
    assert condition(job, "Failed")["reason"] == "TFJobFailed"
    assert "restarts" not in job["status"]["replicaStatuses"]["Worker"]
    wait_for_pods(core, namespace, "mnist", {"mnist-worker-0"}, phase="Failed")


def test_on_failure_restarts_count_and_ttl_deletes_the_finished_job(
    kubectl: Any, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """dist-mnist-parameter-server.yaml: the chief runs under OnFailure, the job has
    ttlSecondsAfterFinished 3600. A crash of the chief is restarted by the kubelet and counted;
    the finished job stays while its TTL runs, and goes once a shorter TTL has passed."""
    job_name = "dist-mnist-ps"
    apply_manifest(kubectl, namespace, "dist-mnist-parameter-server.yaml")
    chief = f"{job_name}-chief-0"
    wait_for_pods(
        core,
        namespace,
        job_name,
        {chief, f"{job_name}-worker-0", f"{job_name}-worker-1", f"{job_name}-ps-0"},
    )
    control.end_pod(core, namespace, chief, exit_code=1)
    job = wait_for_job(
        api_client,
        namespace,
        job_name,
        lambda job: bool(job and job["status"]["replicaStatuses"]["Chief"].get("restarts") == 1),
        "the chief's container restart counted",
    )
    assert condition(job, "Failed") is None
    control.wait_for_pod(
        core,
        namespace,
        chief,
        lambda p: control.EXIT_CODE not in (p.metadata.annotations or {}),
        what="the chief's crash consumed",
    )
    control.end_pod(core, namespace, chief, exit_code=0)
    job = wait_for_condition(api_client, namespace, job_name, "Succeeded")
    assert job["status"]["replicaStatuses"]["Chief"]["restarts"] == 1
    assert get_job(api_client, namespace, job_name)["metadata"]["uid"] == job["metadata"]["uid"]
    kubectl(
        "patch", "tensorflowjob", job_name, "-n", namespace, "--type=merge",
        "-p", '{"spec":{"runPolicy":{"ttlSecondsAfterFinished":1}}}',
    )  # fmt: skip
    wait_for_job(api_client, namespace, job_name, lambda job: job is None, "deleted", 30)


def test_exit_code_restarts_the_collective_as_a_new_attempt(
    kubectl: Any, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """multi-worker-gpu.yaml: two MultiWorkerMirrored workers under restartPolicy ExitCode.
    A worker killed (137) is retried, and both workers start again together."""
    job_name = "resnet50-mwms-gpu"
    names = {f"{job_name}-worker-0", f"{job_name}-worker-1"}
    apply_manifest(kubectl, namespace, "multi-worker-gpu.yaml")
    first = wait_for_pods(core, namespace, job_name, names)
    control.end_pod(core, namespace, f"{job_name}-worker-1", exit_code=137)
    job = wait_for_job(
        api_client,
        namespace,
        job_name,
        lambda job: bool(job and job["status"].get("attempt") == 2),
        "attempt 2",
    )
    again = wait_for_pods(core, namespace, job_name, names)
    assert {p.metadata.uid for p in again.values()}.isdisjoint(
        p.metadata.uid for p in first.values()
    )
    control.end_pod(core, namespace, f"{job_name}-worker-0", exit_code=0)
    job = wait_for_condition(api_client, namespace, job_name, "Succeeded")
    assert job["status"]["attempt"] == 2
