"""Objects that hold a child's name but are not the job's, on the real control plane: a
Service, pod or ConfigMap that the operator's watches cannot see (no job label) is reported on
the job as NameInUse, never created over in a loop, and the job makes its own once it is gone.
An MPI job's ConfigMap is checked every pass like its pods; its key Secret, whose name the API
server generates, is made with the pods that mount it. Names another tenant of the namespace can
work out from the job (its uid) are never trusted: a key Secret planted there is not mounted, a
PodGroup planted there is not joined."""

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
from tfjob_operator.core.gang import pick_pod_group_api

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def mpi_job(name: str, **spec: Any) -> dict:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {
            "entryScript": "train_horovod.py",
            "distribution": {"backend": "mpi", "nodeCount": 2},
            **spec,
        },
    }


def suspended_uid(kubectl: Any, api_client: k8s.ApiClient, namespace: str, job: dict) -> str:
    """Apply ``job`` suspended, as a tenant would find it (waiting in a queue, say): its uid
    is there for anyone who can read it, before the operator makes anything."""
    job["spec"]["runPolicy"] = {"suspend": True}
    apply(kubectl, namespace, job)
    name = job["metadata"]["name"]
    wait_for_condition(api_client, namespace, name, "Suspended", timeout=30)
    return get_job(api_client, namespace, name)["metadata"]["uid"]


def resume(kubectl: Any, namespace: str, name: str) -> None:
    patch = '{"spec":{"runPolicy":{"suspend":false}}}'
    kubectl("patch", "tensorflowjob", name, "-n", namespace, "--type=merge", "-p", patch)


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
    secret = get_job(api_client, namespace, "mended")["status"]["sshSecret"]
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


def test_a_key_secret_planted_under_a_name_worked_out_from_the_job_is_never_mounted(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """A tenant who may create Secrets (not pods) makes one where the job's key used to go
    (<job>-ssh-<uid>), with their own key in authorized_keys: the workers' sshd must never
    trust it. The job's key Secret has a name the API server generated, recorded on the job."""
    uid = suspended_uid(kubectl, api_client, namespace, mpi_job("keyed"))
    planted = f"keyed-ssh-{uid[:8]}"
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": planted},
            "type": "kubernetes.io/ssh-auth",
            "stringData": {
                "ssh-privatekey": "planted",
                "ssh-publickey": "ssh-ed25519 AAAA planted",
                "authorized_keys": "ssh-ed25519 AAAA planted",
            },
        },
    )
    resume(kubectl, namespace, "keyed")
    names = {"keyed-worker-0", "keyed-worker-1", "keyed-launcher-0"}
    pods = wait_for_pods(core, namespace, "keyed", names, timeout=60)
    name = get_job(api_client, namespace, "keyed")["status"]["sshSecret"]
    assert name.startswith("keyed-ssh-")
    assert name != planted
    for pod in pods.values():
        (mounted,) = [v.secret.secret_name for v in pod.spec.volumes if v.name == "tfjob-ssh"]
        assert mounted == name, pod.metadata.name
    secret = core.read_namespaced_secret(name, namespace)
    assert secret.immutable is True
    (owner,) = secret.metadata.owner_references
    assert (owner.uid, owner.controller) == (uid, True)
    assert "planted" not in str(secret.data)


def test_a_pod_group_planted_under_the_jobs_name_is_not_joined(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """A PodGroup made first under the attempt's group name (<job>-a1-<uid>), owner reference
    forged, asking for more pods than the job has: joined, it would hold the job's pods for
    ever. The job says so and starts once it is gone; its own group, read back, is joined."""
    api = pick_pod_group_api(set(kubectl("api-versions").stdout.split()))
    assert api is not None  # the session's cluster runs with gang scheduling on
    group_api, version = api.split("/")
    job = kubeflow_job("grouped", {"Worker": replica(2)})
    uid = suspended_uid(kubectl, api_client, namespace, job)
    name = f"grouped-a1-{uid[:8]}"
    groups = k8s.CustomObjectsApi(api_client)
    owner = {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "name": "grouped",
        "uid": uid,
        "controller": True,
    }
    groups.create_namespaced_custom_object(
        group_api,
        version,
        namespace,
        "podgroups",
        {
            "apiVersion": api,
            "kind": "PodGroup",
            "metadata": {"name": name, "ownerReferences": [owner]},
            "spec": {"schedulingPolicy": {"gang": {"minCount": 99}}},
        },
    )
    resume(kubectl, namespace, "grouped")
    entry = waiting_for(api_client, namespace, "grouped", name)
    assert f"a PodGroup named {name} exists that is not this job's" in entry["message"]
    assert not core.list_namespaced_pod(
        namespace, label_selector="tfjob.dev/job-name=grouped"
    ).items
    groups.delete_namespaced_custom_object(group_api, version, namespace, "podgroups", name)
    pods = wait_for_pods(core, namespace, "grouped", {"grouped-worker-0", "grouped-worker-1"})
    assert {p.spec.scheduling_group.pod_group_name for p in pods.values()} == {name}
    mine = groups.get_namespaced_custom_object(group_api, version, namespace, "podgroups", name)
    assert mine["spec"]["schedulingPolicy"] == {"gang": {"minCount": 2}}
    wait_for_condition(api_client, namespace, "grouped", "Running", timeout=60)
