"""Fair queueing with Kueue, through its plain pod-group integration. Pure.

A job names a Kueue LocalQueue (runPolicy.schedulingPolicy.queue, or Kueue's own label
`kueue.x-k8s.io/queue-name` on the job). Its pods then carry Kueue's pod-group labels: Kueue's
webhook gates each pod as it is created, makes one Kueue Workload of the group once all of it
exists, and lifts the gates only when the whole group fits the ClusterQueue's quota. Jobs
beyond the quota wait, gated, in the queue's order; a job that ends or is deleted frees its
quota for the next. Nothing here calls Kueue: it is labels and annotations on pods.

Chosen over Kueue's job-level integration (a Workload per job, written by this operator, with
suspend): that contract is a Go library Kueue does not expose to other languages, and the pod
group needs no RBAC, no Kueue API version coupling and no second controller loop here.

Who is in the group: every pod of the attempt but an MPI launcher, which is created once the
workers run and so cannot be waited for (it asks for no GPU, and runs outside the queue).
"""

from __future__ import annotations

from typing import Any

from tfjob_operator.api.v1alpha1 import ReplicaSpecs, ReplicaType, TensorFlowJobSpec

from .topology import pod_names

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
TOTAL_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
# Kueue ends a retriable group only when all its pods succeed, which the parameter servers and
# workers of a TensorFlow job never do (the operator stops them once the chief is done): an
# unretriable group ends, and frees its quota, once none of its pods runs. A whole-job restart
# (a new attempt) makes a new group, which queues again.
RETRIABLE_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"


def queue_name(labels: dict[str, str] | None, spec: TensorFlowJobSpec) -> str | None:
    """The LocalQueue a job waits in: its schedulingPolicy's, else Kueue's label on it."""
    policy = spec.run_policy.scheduling_policy if spec.run_policy else None
    if policy is not None and policy.queue:
        return policy.queue
    return (labels or {}).get(QUEUE_LABEL) or None


def queued_members(job: str, replica_specs: ReplicaSpecs) -> list[str]:
    return pod_names(job, replica_specs, outside=(ReplicaType.LAUNCHER,))


def enqueue(pod: dict[str, Any], queue: str, group: str, total: int) -> None:
    """Put a pod in its job's Kueue pod group (before it is created)."""
    pod["metadata"]["labels"][QUEUE_LABEL] = queue
    pod["metadata"]["labels"][GROUP_LABEL] = group
    annotations = pod["metadata"].setdefault("annotations", {})
    annotations[TOTAL_ANNOTATION] = str(total)
    annotations[RETRIABLE_ANNOTATION] = "false"
