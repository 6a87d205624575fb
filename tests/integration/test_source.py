"""Shipping a local source directory with a job, on the real control plane: `tfjob-operator
submit --source DIR` creates the job and its source ConfigMap (owned by it), the pods unpack it
before the trainer starts, a directory that cannot be shipped creates nothing, and a job whose
source has not arrived starts no pod and says why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.jobs import apply, estimator_job, get_job, wait_for_job, wait_for_pods
from tfjob_operator.__main__ import main as tfjob_operator

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def submit(cluster, tmp_path: Path, namespace: str, manifest: dict, source: Path) -> int:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return tfjob_operator(
        [
            "submit",
            "-f",
            str(path),
            "--source",
            str(source),
            "-n",
            namespace,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ]
    )


def test_submit_ships_the_directory_and_the_pods_unpack_it_first(
    cluster,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    project: Path,
    tmp_path: Path,
) -> None:
    assert submit(cluster, tmp_path, namespace, estimator_job("shipped"), project) == 0
    job = get_job(api_client, namespace, "shipped")
    assert job["spec"]["source"] == {"directory": {"configMap": "shipped-source"}}
    source = core.read_namespaced_config_map("shipped-source", namespace)
    (owner,) = source.metadata.owner_references
    assert (owner.kind, owner.uid, owner.controller) == (
        "TensorFlowJob",
        job["metadata"]["uid"],
        True,
    )
    assert set(source.binary_data) == {"source.tar.gz"}
    pods = wait_for_pods(core, namespace, "shipped", {"shipped-worker-0"})
    pod = pods["shipped-worker-0"]
    assert [c.name for c in pod.spec.init_containers] == ["tfjob-source"]
    assert pod.spec.containers[0].working_dir == "/workspace"


def test_a_directory_too_large_creates_nothing(
    cluster, api_client: k8s.ApiClient, namespace: str, project: Path, tmp_path: Path, capsys
) -> None:
    (project / "weights.bin").write_bytes(os.urandom(1_100_000))
    assert submit(cluster, tmp_path, namespace, estimator_job("heavy"), project) == 2
    assert "more than the 1,000,000 a ConfigMap holds" in capsys.readouterr().err
    jobs = k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "tfjob.dev", "v1alpha1", namespace, "tensorflowjobs"
    )
    assert jobs["items"] == []


def test_a_job_whose_source_has_not_arrived_starts_no_pod_and_says_why(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job("orphan", source={"directory": {"configMap": "orphan-source"}}),
    )
    job = wait_for_job(
        api_client,
        namespace,
        "orphan",
        lambda job: bool(job and (job.get("status") or {}).get("waiting")),
        "its status saying it waits for its source",
    )
    assert job is not None
    (waiting,) = job["status"]["waiting"]
    assert (waiting["pod"], waiting["reason"]) == ("orphan-source", "WaitingForSource")
    assert (
        core.list_namespaced_pod(namespace, label_selector="tfjob.dev/job-name=orphan").items == []
    )
