"""What the containers the operator adds to a pod (the source unpacker, the package installer)
take from the trainer: its securityContext, so a namespace enforcing the `restricted` Pod
Security profile admits them when it admits the trainer (or, when the trainer says nothing, a
default that profile accepts), and its CPU, memory and ephemeral-storage requests and limits,
so a ResourceQuota or LimitRange sees them as it sees the trainer. Never its GPUs or claims:
an init container needs no device. Pure."""

from __future__ import annotations

import copy
from typing import Any

# Pod Security `restricted` for a container; what it asks of the pod (runAsNonRoot, a
# seccomp profile) the pod's own securityContext says for every container at once.
RESTRICTED_DEFAULT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
SHARED_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def like_the_trainer(trainer: dict[str, Any]) -> dict[str, Any]:
    """The securityContext and resources of a container the operator adds beside ``trainer``."""
    settings: dict[str, Any] = {
        "securityContext": copy.deepcopy(trainer.get("securityContext") or RESTRICTED_DEFAULT)
    }
    resources = {
        kind: {name: amount for name, amount in amounts.items() if name in SHARED_RESOURCES}
        for kind, amounts in (trainer.get("resources") or {}).items()
        if kind in ("requests", "limits") and isinstance(amounts, dict)
    }
    resources = {kind: amounts for kind, amounts in resources.items() if amounts}
    if resources:
        settings["resources"] = resources
    return settings
