"""All-or-nothing starts with Kubernetes' own gang scheduling (the Workload API, KEP-4671). Pure.

For each attempt of a distributed job the operator creates a PodGroup with a gang policy,
`minCount` = the pods that must run together, and links those pods to it through
`spec.schedulingGroup`. kube-scheduler then binds none of them until `minCount` fit at once, so
two jobs never hold half a pool each waiting for peers that cannot be placed. A new attempt gets
a new PodGroup: the link is immutable, and a group is scheduled as a whole only once.

Who is in the gang: every pod of the job but an Evaluator (it does not hold training back) and
an MPI job's launcher (created once its workers run: it cannot be waited for).
"""

from __future__ import annotations

from typing import Any

from tfjob_operator.api.labels import JOB_NAME_LABEL
from tfjob_operator.api.v1alpha1 import ReplicaSpecs, ReplicaType

from .builders import JobRef
from .topology import pod_names

# Served versions of the PodGroup API, newest first: 1.37 serves v1beta1 (and v1alpha3), 1.36
# v1alpha2. The objects the operator writes are the same in both.
POD_GROUP_VERSIONS = ("scheduling.k8s.io/v1beta1", "scheduling.k8s.io/v1alpha2")
OUTSIDE_THE_GANG = (ReplicaType.EVALUATOR, ReplicaType.LAUNCHER)


def pick_pod_group_api(served: set[str]) -> str | None:
    """The PodGroup apiVersion to use among the ``served`` group versions, if any."""
    return next((version for version in POD_GROUP_VERSIONS if version in served), None)


def gang_members(job: str, replica_specs: ReplicaSpecs) -> list[str]:
    """The names of the pods that must start together."""
    return pod_names(job, replica_specs, outside=OUTSIDE_THE_GANG)


def pod_group_name(ref: JobRef, attempt: int) -> str:
    """Per job and attempt; the uid keeps another job of the same name out of it."""
    return f"{ref.name}-a{attempt}-{ref.uid[:8]}"


def min_count(members: int, min_available: int | None) -> int:
    return min(min_available, members) if min_available else members


def pod_group(
    ref: JobRef, attempt: int, members: int, min_available: int | None, api_version: str
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "PodGroup",
        "metadata": {
            "name": pod_group_name(ref, attempt),
            "namespace": ref.namespace,
            "labels": {JOB_NAME_LABEL: ref.name},
            "ownerReferences": [ref.owner_reference()],
        },
        "spec": {"schedulingPolicy": {"gang": {"minCount": min_count(members, min_available)}}},
    }


def join(pod: dict[str, Any], group: str) -> None:
    """Link a pod to its group (before it is created: the link is immutable)."""
    pod["spec"]["schedulingGroup"] = {"podGroupName": group}
