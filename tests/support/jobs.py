"""Helpers for tests that run TensorFlowJobs on the local cluster through the operator."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import watch

from tfjob_localcluster.control import wait_for
from tfjob_operator.api.labels import JOB_NAME_LABEL
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION


def estimator_job(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {"entryScript": "train.py", **spec},
    }


def replica(replicas: int = 1, gpus: int = 0, **extra: object) -> dict:
    container: dict = {"name": "tensorflow", "image": "trainer:test", "command": ["python", "t.py"]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return {"replicas": replicas, "template": {"spec": {"containers": [container]}}, **extra}


def kubeflow_job(name: str, replica_specs: dict, **spec: object) -> dict:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {"tfReplicaSpecs": replica_specs, **spec},
    }


def apply(kubectl: Any, namespace: str, manifest: dict[str, Any] | str) -> None:
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    kubectl("apply", "-n", namespace, "-f", "-", input=text)


def get_job(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


def condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in (job.get("status") or {}).get("conditions") or []:
        if item["type"] == kind and item["status"] == "True":
            return item
    return None


def wait_for_job(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any] | None], bool],
    what: str,
    timeout: float = 60,
) -> dict[str, Any] | None:
    """Watch job ``name`` until ``predicate(job)`` holds (``job`` is None once it is gone);
    return the job."""
    custom = k8s.CustomObjectsApi(api)
    list_jobs = functools.partial(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
    )

    def matching(jobs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None] | None:
        job = jobs[0] if jobs else None
        return (job,) if predicate(job) else None

    (job,) = wait_for(
        list_jobs,
        matching,
        timeout=timeout,
        what=f"job {name}: {what}",
        field_selector=f"metadata.name={name}",
    )
    return job


def wait_for_condition(
    api: k8s.ApiClient, namespace: str, name: str, kind: str, timeout: float = 60
) -> dict[str, Any]:
    """Wait until the job has condition ``kind`` True; return the job."""
    job = wait_for_job(
        api, namespace, name, lambda job: bool(job and condition(job, kind)), kind, timeout
    )
    assert job is not None
    return job


def condition_after(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    kind: str,
    action: Callable[[], object],
    timeout: float = 30,
) -> dict[str, Any]:
    """Do ``action`` and return the first version of the job with condition ``kind`` True after
    it, however briefly that lasted: the watch starts from a listing made before the action,
    so no version of the job is missed (a pod restarts on kwok within milliseconds)."""
    custom = k8s.CustomObjectsApi(api)
    selector = f"metadata.name={name}"
    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, field_selector=selector
    )
    action()
    stream = watch.Watch()
    try:
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=selector,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=int(timeout),
        ):
            if event["type"] != "DELETED" and condition(event["object"], kind):
                return dict(event["object"])
    finally:
        stream.stop()
    raise AssertionError(f"job {name}: no {kind} within {timeout:.0f} s of the action")


def job_pods(core: k8s.CoreV1Api, namespace: str, name: str) -> dict[str, k8s.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
    return {p.metadata.name: p for p in pods}


def wait_for_pods(
    core: k8s.CoreV1Api,
    namespace: str,
    name: str,
    names: set[str],
    phase: str = "Running",
    timeout: float = 60,
) -> dict[str, k8s.V1Pod]:
    """Wait until exactly the pods ``names`` of a job exist, all in ``phase``."""

    def all_there(pods: list[k8s.V1Pod]) -> dict[str, k8s.V1Pod] | None:
        current = {p.metadata.name: p for p in pods if not p.metadata.deletion_timestamp}
        if set(current) == names and all(p.status.phase == phase for p in current.values()):
            return current
        return None

    return wait_for(
        core.list_namespaced_pod,
        all_there,
        timeout=timeout,
        what=f"pods {sorted(names)} {phase}",
        namespace=namespace,
        label_selector=f"{JOB_NAME_LABEL}={name}",
    )


def tf_config(pod: k8s.V1Pod) -> dict[str, Any] | None:
    container = next(c for c in pod.spec.containers if c.name == "tensorflow")
    for env in container.env or []:
        if env.name == "TF_CONFIG":
            return json.loads(env.value)
    return None
