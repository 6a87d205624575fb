"""What every contestant is asked to do: the same jobs, the same pods, the same placement.

A job is `N` Workers (restartPolicy Never) on the simulated GPU pool, placed by nodeSelector and
a toleration (no GPU request), with no ServiceAccount token, and `cleanPodPolicy: None` so that
no contestant deletes pods when the job ends. Our kind and Kubeflow's differ only in
apiVersion/kind: the TensorFlowJob is written in the Kubeflow form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .kubeapi import namespaced

RUN_LABEL = "bench.tfjob.dev/run"
BENCH_POOL = "gpu-bench"
NODE_POOL_LABEL = "tfjob.dev/node-pool"
GPU_TAINT_KEY = "nvidia.com/gpu"
IMAGE = "tensorflow/tensorflow:2.21.0-gpu"  # never pulled: kwok only pretends to run it


@dataclass(frozen=True)
class JobKind:
    """A job resource as the driver creates it and the observer watches it."""

    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


OURS = JobKind("tfjob.dev", "v1alpha1", "TensorFlowJob", "tensorflowjobs")
KUBEFLOW = JobKind("kubeflow.org", "v1", "TFJob", "tfjobs")


def job_name(index: int) -> str:
    return f"job-{index:05d}"


def fails(index: int, every: int) -> bool:
    """Whether job ``index`` is the one in ``every`` whose worker 0 exits with code 1."""
    return every > 0 and index % every == every - 1


def pod_template(run: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {RUN_LABEL: run}},
        "spec": {
            "automountServiceAccountToken": False,
            "nodeSelector": {NODE_POOL_LABEL: BENCH_POOL},
            "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "tensorflow",
                    "image": IMAGE,
                    "command": ["python", "/opt/train.py"],
                }
            ],
        },
    }


def job_spec(pods_per_job: int, run: str) -> dict[str, Any]:
    return {
        "tfReplicaSpecs": {
            "Worker": {
                "replicas": pods_per_job,
                "restartPolicy": "Never",
                "template": pod_template(run),
            }
        },
        "runPolicy": {"cleanPodPolicy": "None"},
    }


def job(kind: JobKind, name: str, namespace: str, pods_per_job: int, run: str) -> dict[str, Any]:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {RUN_LABEL: run}},
        "spec": job_spec(pods_per_job, run),
    }


def worker_pod_name(job: str, index: int) -> str:
    """Both operators name pods `<job>-worker-<index>`."""
    return f"{job}-worker-{index}"


def render_children(
    job_body: dict[str, Any], uid: str, pod_group_api: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The children our operator's first pass creates for ``job_body``, by its own pure code.

    Returns (plural, body) pairs in the operator's order of creation (the PodGroup the pods
    join, when the cluster serves ``pod_group_api``, and the Service before the pods). The
    operator is imported when called, so that the limit always renders what the operator
    renders at that moment.
    """
    import datetime as dt

    from tfjob_operator.core.decide import decide_new_job
    from tfjob_operator.settings import OperatorSettings

    metadata = {**job_body["metadata"], "uid": uid}
    compiled, decision = decide_new_job(
        {**job_body, "metadata": metadata},
        OperatorSettings.from_environment().model_copy(update={"pod_group_api": pod_group_api}),
        dt.datetime.now(dt.UTC),
    )
    if compiled.problem is not None:
        raise ValueError(f"{metadata['name']}: {compiled.problem.message}")
    plurals = {
        "Service": "services",
        "Pod": "pods",
        "ConfigMap": "configmaps",
        "PodGroup": "podgroups",
    }
    return [(plurals[child["kind"]], child) for child in decision.create]


# Created before the rest, which refers to them (as the operator's controller does).
CREATED_FIRST = ("PodGroup", "ConfigMap", "Secret")


def collection(namespace: str, child: dict[str, Any]) -> str:
    """The REST path to create ``child`` at, from its apiVersion and kind."""
    group, _, version = child["apiVersion"].rpartition("/")
    return namespaced(namespace, child["kind"].lower() + "s", group=group, version=version)


def owned_by(
    children: list[tuple[str, dict[str, Any]]], uid: str
) -> list[tuple[str, dict[str, Any]]]:
    """Children rendered ahead (``render_children`` with a stand-in uid) made the job's own:
    the limit renders before t0, so its hot path is the creates alone, as before."""
    for _, child in children:
        for reference in child["metadata"].get("ownerReferences") or []:
            reference["uid"] = uid
    return children
