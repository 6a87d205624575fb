"""Refuse at `kubectl apply` what only the installation knows is wrong: GPUs on a CPU-only pool.

The CRD cannot know which node pools have GPUs; the operator's settings do. From them this
module builds a ValidatingAdmissionPolicy (CEL evaluated by the API server itself, no webhook to
run) and its binding. Pure: the operator applies the result at startup.
"""

from __future__ import annotations

import json
from typing import Any

from tfjob_operator.api.labels import GPU_RESOURCE
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION, ReplicaType
from tfjob_operator.settings import OperatorSettings

POLICY_NAME = f"{GROUP}-node-pools"


def _replica_requests_gpus(replica_type: ReplicaType) -> str:
    spec = f"object.spec.tfReplicaSpecs.{replica_type.value}"
    return (
        f"(has(object.spec.tfReplicaSpecs) && has({spec}) && {spec}.template.spec.containers"
        f".exists(c, has(c.resources) && has(c.resources.limits) && "
        f"'{GPU_RESOURCE}' in c.resources.limits))"
    )


def requests_gpus_expression() -> str:
    estimator = "(has(object.spec.useGpu) && object.spec.useGpu)"
    return " || ".join([estimator, *(_replica_requests_gpus(t) for t in ReplicaType)])


def node_pool_policy(settings: OperatorSettings) -> list[dict[str, Any]] | None:
    """The policy and its binding, or None when no pool is known to lack GPUs."""
    cpu_only = sorted(name for name, pool in settings.node_pools.items() if not pool.gpu)
    if not cpu_only:
        return None
    pools = json.dumps(cpu_only)
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": POLICY_NAME,
            "labels": {"app.kubernetes.io/managed-by": "tfjob-operator"},
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [PLURAL],
                    }
                ]
            },
            "validations": [
                {
                    "expression": (
                        f"!has(object.spec.nodePool) || !(object.spec.nodePool in {pools}) || "
                        f"!({requests_gpus_expression()})"
                    ),
                    "messageExpression": (
                        "'spec.nodePool: node pool ' + object.spec.nodePool + ' has no GPUs, "
                        "but the job requests GPUs (useGpu or an nvidia.com/gpu limit)'"
                    ),
                    "reason": "Invalid",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {
            "name": POLICY_NAME,
            "labels": {"app.kubernetes.io/managed-by": "tfjob-operator"},
        },
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]
