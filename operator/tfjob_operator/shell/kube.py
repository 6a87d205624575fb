"""The operator's own calls to the API server: a thin asyncio layer over `kubernetes.aio`.

Everything the operator writes goes through here, so the client can be swapped (or measured) in
one place. The reads here are the list-watch loop's (lists and watches) and API discovery; a
pass itself never reads: it reads the watch-fed cache. Bodies go out and come back
as plain JSON dicts, never through the client's generated models, whose (de)serialisation costs
more CPU than the request itself.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from tfjob_operator.core.events import JobEvent

from . import metrics

# How RBAC words a refusal: `... User "u" cannot create resource "pods" in API group "" ...`
_RBAC_REFUSAL = re.compile(r'cannot (\w+) resource "([^"]+)"')
# The OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift): a child that
# blocks its owner's deletion needs update on the owner's finalizers, which RBAC grants.
_FINALIZERS_REFUSAL = "cannot set blockOwnerDeletion if an ownerReference refers to a resource"
REQUEST_TIMEOUT = 60.0
# Connections the client keeps open to the API server at most (aiohttp speaks HTTP/1.1: one
# in-flight request per connection).
CONNECTIONS = 128

# Accept headers that ask for objects' metadata alone (PartialObjectMetadata).
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_CORE_PATHS = {
    "Pod": "pods",
    "Service": "services",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Event": "events",
}
_GROUP_PATHS = {"PodGroup": "podgroups"}
_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_ADMISSION_PLURALS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


class ApiError(Exception):
    """An error answer of the API server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Rejected(ApiError):
    """The API server refused an object for good (invalid, forbidden by policy...)."""


class Conflict(ApiError):
    """The object changed since it was read (409 on an update)."""


class NotFound(ApiError):
    """The object is not there (404): on a write to a job, the job is gone."""


class Forbidden(Exception):
    """RBAC refuses one of the operator's calls: only an administrator can fix it."""

    def __init__(self, verb: str, resource: str, namespace: str | None, message: str) -> None:
        super().__init__(message)
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        self.message = message

    def __str__(self) -> str:
        where = f'in namespace "{self.namespace}"' if self.namespace else "cluster-wide"
        return (
            f'permission denied: the operator may not {self.verb} "{self.resource}" {where} '
            f"(grant the verb {self.verb!r} on {self.resource!r} in its ClusterRole or Role): "
            f"{self.message}"
        )


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: changed and new keys,
    removed keys as null, nested objects as patches of their own; lists are replaced whole."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    return patch


def _collection(body: dict[str, Any]) -> tuple[str, str]:
    """The resource of a namespaced object (core, or a PodGroup), and the path of its kind in
    its namespace."""
    resource = _CORE_PATHS.get(body["kind"]) or _GROUP_PATHS[body["kind"]]
    prefix = "/api/v1" if body["apiVersion"] == "v1" else f"/apis/{body['apiVersion']}"
    return resource, f"{prefix}/namespaces/{body['metadata']['namespace']}/{resource}"


def status_message(status: int, raw: bytes) -> str:
    """The `message` of a Kubernetes Status body, or the raw text."""
    text = raw.decode(errors="replace")
    try:
        message = json.loads(raw).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or text or f"HTTP {status}")


def error_for(status: int, message: str, namespace: str | None) -> Exception:
    """The exception an error answer means to the operator."""
    if status == 403:
        refusal = _RBAC_REFUSAL.search(message)
        if refusal is not None:
            return Forbidden(refusal.group(1), refusal.group(2), namespace, message)
        if _FINALIZERS_REFUSAL in message:
            return Forbidden("update", f"{PLURAL}/finalizers", namespace, message)
    if status == 409:
        return Conflict(status, message)
    if status == 404:
        return NotFound(status, message)
    if status in (400, 422) or (status == 403 and is_policy_denial(message)):
        return Rejected(status, message)
    return ApiError(status, message)


def is_policy_denial(message: str) -> bool:
    """A 403 from admission that retrying cannot fix (pod security, a policy), as opposed to
    RBAC (fixed by an administrator) or an exceeded quota (freed when other pods end)."""
    return "cannot create resource" not in message and "exceeded quota" not in message


async def load_configuration(kubeconfig: str | None = None) -> k8s.Configuration:
    """Client settings from a kubeconfig, or from the pod's service account in a cluster."""
    configuration = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config(client_configuration=configuration)
    else:
        await k8s_config.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = CONNECTIONS
    # aiohttp's trust_env reads the proxy variables and ~/.netrc in a thread on every request.
    # An API server is reached directly, as kopf's own client does by default.
    configuration.client_session_kwargs = {"trust_env": False}
    return configuration


class Kube:
    """The writes of the operator: create (409 = exists), delete, status, events."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        return cls(k8s.ApiClient(await load_configuration(kubeconfig)))

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        resource: str,
        namespace: str | None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """One call; error answers are counted and raised as the exception they mean."""
        headers = {"Accept": accept, "Content-Type": content_type}
        await self.api.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        response = await self.api.rest_client.request(
            method,
            self.api.configuration.host + path,
            headers=headers,
            body=body,
            _request_timeout=REQUEST_TIMEOUT,
        )
        raw = await response.read()
        if response.status >= 400:
            metrics.API_ERRORS.labels(verb=verb, resource=resource, code=str(response.status)).inc()
            raise error_for(response.status, status_message(response.status, raw), namespace)
        return json.loads(raw) if raw else {}

    async def served_versions(self, group: str) -> set[str]:
        """The `group/version`s the API server serves of an API group (none: not served)."""
        try:
            found = await self.request(
                "GET", f"/apis/{group}", verb="get", resource="apigroups", namespace=None
            )
        except ApiError as error:
            if error.status == 404:
                return set()
            raise
        return {str(version["groupVersion"]) for version in found.get("versions") or []}

    async def list_page(
        self, path: str, *, resource: str, namespace: str | None, metadata_only: bool = False
    ) -> dict[str, Any]:
        """One page of a LIST (``path`` carries the query); only informers list, once each.
        ``metadata_only``: the objects' metadata alone (a Secret's data never comes)."""
        return await self.request(
            "GET",
            path,
            verb="list",
            resource=resource,
            namespace=namespace,
            accept=METADATA_LIST if metadata_only else "application/json",
        )

    async def watch(
        self,
        path: str,
        *,
        resource: str,
        namespace: str | None,
        timeout: float,
        metadata_only: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of a WATCH (``path`` carries the query), one parsed JSON object each."""
        headers = {"Accept": METADATA if metadata_only else "application/json"}
        await self.api.update_params_for_auth(headers, [], ["BearerToken"], path, "GET", None)
        response = await self.api.rest_client.request(
            "GET", self.api.configuration.host + path, headers=headers, _request_timeout=timeout
        )
        stream = response.response
        try:
            if response.status >= 400:
                raw = await response.read()
                metrics.API_ERRORS.labels(
                    verb="watch", resource=resource, code=str(response.status)
                ).inc()
                raise error_for(response.status, status_message(response.status, raw), namespace)
            async for line in stream.content:
                if line.strip():
                    yield json.loads(line)
        finally:
            stream.release()

    async def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create a namespaced object (core, or a PodGroup); None when it exists already (a
        retried create)."""
        resource, collection = _collection(body)
        try:
            return await self.request(
                "POST",
                collection,
                verb="create",
                resource=resource,
                namespace=body["metadata"]["namespace"],
                body=body,
            )
        except Conflict:
            return None

    async def read(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The stored object of ``body``'s kind, namespace and name; None when there is none."""
        resource, collection = _collection(body)
        try:
            return await self.request(
                "GET",
                f"{collection}/{body['metadata']['name']}",
                verb="get",
                resource=resource,
                namespace=body["metadata"]["namespace"],
            )
        except NotFound:
            return None

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete exactly this pod (by uid), in the background; gone already is fine."""
        try:
            await self.request(
                "DELETE",
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                verb="delete",
                resource="pods",
                namespace=namespace,
                body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
            )
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    async def delete_job(self, job: dict[str, Any]) -> None:
        """Delete exactly this job (by uid); garbage collection takes its children."""
        metadata = job["metadata"]
        namespace = metadata["namespace"]
        try:
            await self.request(
                "DELETE",
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{metadata['name']}",
                verb="delete",
                resource=PLURAL,
                namespace=namespace,
                body={
                    "preconditions": {"uid": metadata["uid"]},
                    "propagationPolicy": "Background",
                },
            )
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    async def write_status(self, job: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Make ``status`` the job's status, only if the job is still the version read
        (Conflict else); returns the job as stored. Sent as a merge patch of what changed, with
        the resourceVersion read as its precondition: a fraction of the whole job's bytes."""
        metadata = job["metadata"]
        namespace = metadata["namespace"]
        return await self.request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{metadata['name']}/status",
            verb="patch",
            resource=f"{PLURAL}/status",
            namespace=namespace,
            body={
                "metadata": {"resourceVersion": metadata["resourceVersion"]},
                "status": merge_patch(job.get("status") or {}, status),
            },
            content_type="application/merge-patch+json",
        )

    async def post_event(self, job: dict[str, Any], event: JobEvent) -> None:
        metadata = job["metadata"]
        namespace = metadata["namespace"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            verb="create",
            resource="events",
            namespace=namespace,
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{metadata['name']}.{secrets.token_hex(8)}",
                    "namespace": namespace,
                },
                "involvedObject": {
                    "apiVersion": job["apiVersion"],
                    "kind": job["kind"],
                    "name": metadata["name"],
                    "namespace": namespace,
                    "uid": metadata["uid"],
                    "resourceVersion": metadata.get("resourceVersion"),
                },
                "type": event.type,
                "reason": event.reason,
                "message": event.message[:1024],
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "source": {"component": "tfjob-operator"},
                "reportingComponent": "tfjob.dev/operator",
                "reportingInstance": "tfjob-operator",
            },
        )

    async def ensure_admission_policy(self, documents: list[dict[str, Any]]) -> None:
        """Create or update a ValidatingAdmissionPolicy and its binding."""
        for document in documents:
            resource = _ADMISSION_PLURALS[document["kind"]]
            collection = f"{_ADMISSION}/{resource}"
            name = document["metadata"]["name"]
            try:
                await self.request(
                    "POST",
                    collection,
                    verb="create",
                    resource=resource,
                    namespace=None,
                    body=document,
                )
            except Conflict:
                current = await self.request(
                    "GET", f"{collection}/{name}", verb="get", resource=resource, namespace=None
                )
                body = {
                    **document,
                    "metadata": {
                        **document["metadata"],
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                }
                await self.request(
                    "PUT",
                    f"{collection}/{name}",
                    verb="update",
                    resource=resource,
                    namespace=None,
                    body=body,
                )
