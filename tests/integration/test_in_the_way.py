"""Objects that hold a child's name but are not the job's, on the real control plane: a
Service, pod or ConfigMap that the operator's watches cannot see (no job label) is reported on
the job as NameInUse, never created over in a loop, and the job makes its own once it is gone.
An MPI job's ConfigMap is checked every pass like its pods; its key Secret, whose name carries
the job's uid, is made with the pods that mount it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from tests.support.jobs import (
    apply,
    get_job,
    kubeflow_job,
    replica,
    wait_for_condition,
    wait_for_job,
    wait_for_pods,
)
from tfjob_localcluster import control

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def mpi_job(name: str) -> dict:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {
            "entryScript": "train_horovod.py",
            "distribution": {"backend": "mpi", "nodeCount": 2},
        },
    }


def waiting_for(api_client: k8s.ApiClient, namespace: str, job: str, name: str) -> dict:
    """Wait until the job's status lists ``name`` as in the way; return that entry."""
    found = wait_for_job(
        api_client,
        namespace,
        job,
        lambda body: bool(
            body
            and any(
                w["pod"] == name and w["reason"] == "NameInUse"
                for w in (body.get("status") or {}).get("waiting") or []
            )
        ),
        f"its status naming {name} in the way",
    )
    assert found is not None
    return next(w for w in found["status"]["waiting"] if w["pod"] == name)


def owned_by_job(obj: object) -> bool:
    refs = obj.metadata.owner_references or []  # type: ignore[attr-defined]
    return any(ref.kind == "TensorFlowJob" for ref in refs)


def wait_for_owned(list_fn: Any, namespace: str, name: str, timeout: float) -> None:
    """Wait until the object ``name`` exists and is the job's (made again by the operator)."""
    control.wait_for(
        list_fn,
        lambda items: [i for i in items if owned_by_job(i)] or None,
        timeout=timeout,
        what=f"the job's own {name}",
        namespace=namespace,
        field_selector=f"metadata.name={name}",
    )


def test_an_unlabelled_service_in_the_way_is_reported_then_replaced_once_gone(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    core.create_namespaced_service(
        namespace,
        {"metadata": {"name": "taken"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
    )
    apply(kubectl, namespace, kubeflow_job("taken", {"Worker": replica(1)}))
    entry = waiting_for(api_client, namespace, "taken", "taken")
    assert "a Service named taken exists that is not this job's" in entry["message"]
    core.delete_namespaced_service("taken", namespace)
    wait_for_owned(core.list_namespaced_service, namespace, "taken", timeout=60)
    wait_for_condition(api_client, namespace, "taken", "Running", timeout=30)


def test_a_labelled_service_of_another_name_does_not_stand_in_for_the_jobs_own(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """A TensorBoard Service applied with the job, labelled with the job's name: the job still
    makes its own headless Service, which its pods' hostnames need."""
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "board-tb", "labels": {"tfjob.dev/job-name": "board"}},
            "spec": {
                "selector": {"tfjob.dev/job-name": "board"},
                "ports": [{"port": 6006}],
            },
        },
    )
    apply(kubectl, namespace, kubeflow_job("board", {"Worker": replica(2)}))
    wait_for_owned(core.list_namespaced_service, namespace, "board", timeout=60)
    job = wait_for_condition(api_client, namespace, "board", "Running", timeout=60)
    assert not (job.get("status") or {}).get("waiting"), job["status"]
    assert core.read_namespaced_service("board-tb", namespace).spec.ports[0].port == 6006


def test_an_mpi_jobs_config_map_in_the_way_holds_its_pods_back_until_gone(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "ring-mpi"}, "data": {"hostfile": "elsewhere slots=8"}}
    )
    apply(kubectl, namespace, mpi_job("ring"))
    entry = waiting_for(api_client, namespace, "ring", "ring-mpi")
    assert "a ConfigMap named ring-mpi exists that is not this job's" in entry["message"]
    assert not core.list_namespaced_pod(namespace, label_selector="tfjob.dev/job-name=ring").items
    core.delete_namespaced_config_map("ring-mpi", namespace)
    wait_for_pods(core, namespace, "ring", {"ring-worker-0", "ring-worker-1"}, timeout=60)
    hostfile = core.read_namespaced_config_map("ring-mpi", namespace)
    assert owned_by_job(hostfile)
    assert "ring-worker-0" in hostfile.data["hostfile"]


def test_an_mpi_jobs_config_map_is_made_again_at_once_and_its_key_with_new_pods(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    names = {"mended-worker-0", "mended-worker-1", "mended-launcher-0"}
    apply(kubectl, namespace, mpi_job("mended"))
    wait_for_pods(core, namespace, "mended", names)
    uid = get_job(api_client, namespace, "mended")["metadata"]["uid"]
    secret = f"mended-ssh-{uid[:8]}"
    first = core.read_namespaced_secret(secret, namespace).metadata.uid
    core.delete_namespaced_secret(secret, namespace)
    core.delete_namespaced_config_map("mended-mpi", namespace)
    wait_for_owned(core.list_namespaced_config_map, namespace, "mended-mpi", timeout=30)
    # The key is made again with the pods that mount it: a killed worker restarts them all.
    control.end_pod(core, namespace, "mended-worker-1", exit_code=137)
    wait_for_job(
        api_client,
        namespace,
        "mended",
        lambda job: bool(job and job["status"].get("attempt") == 2),
        "attempt 2",
    )
    wait_for_pods(core, namespace, "mended", names, timeout=60)
    again = core.read_namespaced_secret(secret, namespace)
    assert again.metadata.uid != first
    assert owned_by_job(again)
