"""Drive simulated pods and nodes through the public API, and wait for what follows.

Every outcome is chosen by an annotation that a kwok stage in ``stages.yaml`` selects; waiting
is done by watching the API server from a listed resourceVersion, never by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.rest import ApiException

EXIT_CODE = "sim.tfjob.dev/exit-code"
REASON = "sim.tfjob.dev/reason"
MESSAGE = "sim.tfjob.dev/message"
NODE_NOT_READY = "sim.tfjob.dev/not-ready"

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_for(
    list_fn: Callable[..., Any],
    predicate: Callable[[list[Any]], T | None],
    *,
    timeout: float,
    what: str,
    **list_kwargs: Any,
) -> T:
    """Watch ``list_fn``'s collection until ``predicate(items)`` returns something truthy.

    ``predicate`` sees the whole current collection after each change (level-based), so it can
    ask about several objects at once. Its truthy result is returned.
    """
    deadline = time.monotonic() + timeout
    items: dict[str, Any] = {}
    resource_version: str | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        if resource_version is None:
            listed = list_fn(**list_kwargs)
            if isinstance(listed, dict):  # custom objects come as plain dicts
                items = {_key(obj): obj for obj in listed["items"]}
                resource_version = listed["metadata"]["resourceVersion"]
            else:
                items = {_key(obj): obj for obj in listed.items}
                resource_version = listed.metadata.resource_version
            result = predicate(list(items.values()))
            if result:
                return result
        stream = watch.Watch()
        try:
            for event in stream.stream(
                list_fn,
                resource_version=resource_version,
                timeout_seconds=max(1, int(remaining + 0.999)),
                **list_kwargs,
            ):
                obj = event["object"]
                resource_version = event["raw_object"]["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    items.pop(_key(obj), None)
                else:
                    items[_key(obj)] = obj
                result = predicate(list(items.values()))
                if result:
                    return result
        except ApiException as error:
            if error.status != 410:  # resourceVersion too old: list again
                raise
            resource_version = None
        finally:
            stream.stop()


def _key(obj: Any) -> str:
    if isinstance(obj, dict):
        return f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
    return f"{obj.metadata.namespace}/{obj.metadata.name}"


def wait_for_pod(
    core: k8s.CoreV1Api,
    namespace: str,
    name: str,
    condition: Callable[[k8s.V1Pod], bool],
    *,
    timeout: float = 30,
    what: str = "",
) -> k8s.V1Pod:
    """Wait until the named pod satisfies ``condition``; return it."""

    def matching(pods: list[k8s.V1Pod]) -> k8s.V1Pod | None:
        return next((p for p in pods if condition(p)), None)

    return wait_for(
        core.list_namespaced_pod,
        matching,
        timeout=timeout,
        what=what or f"pod {namespace}/{name}",
        namespace=namespace,
        field_selector=f"metadata.name={name}",
    )


def wait_for_pod_phase(
    core: k8s.CoreV1Api, namespace: str, name: str, phase: str, timeout: float = 30
) -> k8s.V1Pod:
    return wait_for_pod(
        core,
        namespace,
        name,
        lambda p: p.status is not None and p.status.phase == phase,
        timeout=timeout,
        what=f"pod {namespace}/{name} to be {phase}",
    )


def wait_for_deletion(
    list_fn: Callable[..., Any], name: str, *, timeout: float = 30, **list_kwargs: Any
) -> None:
    """Wait until no object named ``name`` is listed by ``list_fn``."""
    wait_for(
        list_fn,
        lambda items: None if any(_key(i).endswith(f"/{name}") for i in items) else True,
        timeout=timeout,
        what=f"{name} to be deleted",
        field_selector=f"metadata.name={name}",
        **list_kwargs,
    )


def end_pod(
    core: k8s.CoreV1Api,
    namespace: str,
    name: str,
    *,
    exit_code: int = 0,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    """Make every container of a running simulated pod exit with ``exit_code``.

    The pod then Succeeds, Fails, or restarts its containers, as its restartPolicy says.
    """
    annotations = {EXIT_CODE: str(exit_code)}
    if reason is not None:
        annotations[REASON] = reason
    if message is not None:
        annotations[MESSAGE] = message
    core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}})


def set_node_not_ready(core: k8s.CoreV1Api, name: str, reason: str = "KubeletNotReady") -> None:
    core.patch_node(name, {"metadata": {"annotations": {NODE_NOT_READY: reason}}})


def set_node_ready(core: k8s.CoreV1Api, name: str) -> None:
    core.patch_node(name, {"metadata": {"annotations": {NODE_NOT_READY: None}}})


def node_ready_status(node: k8s.V1Node) -> str | None:
    for condition in (node.status and node.status.conditions) or []:
        if condition.type == "Ready":
            return str(condition.status)
    return None


def wait_for_node_ready(
    core: k8s.CoreV1Api, name: str, status: str = "True", timeout: float = 30
) -> k8s.V1Node:
    return wait_for(
        core.list_node,
        lambda nodes: next((n for n in nodes if node_ready_status(n) == status), None),
        timeout=timeout,
        what=f"node {name} Ready={status}",
        field_selector=f"metadata.name={name}",
    )


def remove_node(core: k8s.CoreV1Api, name: str, timeout: float = 30) -> None:
    """Delete a Node, as a cloud provider does when the machine is gone."""
    core.delete_node(name)
    wait_for_deletion(core.list_node, name, timeout=timeout)
