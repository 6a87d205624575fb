"""The operator's own calls to the API server: a thin async layer over the `kubernetes` client.

Everything the reconcile does to the cluster goes through here, so the client can be swapped
(or measured) in one place. Calls run in threads: the client is synchronous.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from . import metrics
from .api.v1alpha1 import GROUP, PLURAL, VERSION
from .settings import JOB_NAME_LABEL
from .status import JobEvent

# How RBAC words a refusal: `... User "u" cannot create resource "pods" in API group "" ...`
_RBAC_REFUSAL = re.compile(r'cannot (\w+) resource "([^"]+)"')


class Rejected(Exception):
    """The API server refused an object for good (invalid, forbidden by policy...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


def load_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An API client from a kubeconfig, or from the pod's service account in a cluster."""
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config()
            return k8s.ApiClient()
        except k8s_config.ConfigException:
            pass
    return k8s_config.new_client_from_config(config_file=kubeconfig)


@dataclass
class Kube:
    api: k8s.ApiClient

    def __post_init__(self) -> None:
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(obj)  # type: ignore[no-any-return]

    async def _call(
        self,
        verb: str,
        resource: str,
        namespace: str | None,
        call: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """One API call in a thread; counts error answers and names RBAC refusals."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except ApiException as error:
            metrics.API_ERRORS.labels(verb=verb, resource=resource, code=str(error.status)).inc()
            if error.status == 403:
                message = api_message(error)
                refusal = _RBAC_REFUSAL.search(message)
                if refusal is not None:
                    raise Forbidden(
                        refusal.group(1), refusal.group(2), namespace, message
                    ) from error
            raise

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(
                "get",
                PLURAL,
                namespace,
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def list_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        result = await self._call(
            "list",
            "pods",
            namespace,
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"{JOB_NAME_LABEL}={job_name}",
        )
        return [self._plain(p) for p in result.items]

    async def list_services(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        result = await self._call(
            "list",
            "services",
            namespace,
            self.core.list_namespaced_service,
            namespace,
            label_selector=f"{JOB_NAME_LABEL}={job_name}",
        )
        return [self._plain(s) for s in result.items]

    async def create(self, kind: str, body: dict[str, Any]) -> bool:
        """Create a Pod or Service; False when it already exists (a retried create is fine)."""
        namespace = body["metadata"]["namespace"]
        create = {
            "Pod": self.core.create_namespaced_pod,
            "Service": self.core.create_namespaced_service,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Secret": self.core.create_namespaced_secret,
        }[kind]
        try:
            await self._call("create", f"{kind.lower()}s", namespace, create, namespace, body)
        except ApiException as error:
            if error.status == 409:
                return False
            if error.status in (400, 422) or (error.status == 403 and _is_policy_denial(error)):
                raise Rejected(error.status, api_message(error)) from error
            raise
        return True

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete exactly this pod (by uid), in the background; gone already is fine."""
        try:
            await self._call(
                "delete",
                "pods",
                namespace,
                self.core.delete_namespaced_pod,
                name,
                namespace,
                body=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=uid)),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    async def replace_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        """Write the whole status at once, only if the job is still the one we read (409 else)."""
        body = {**job, "status": status}
        metadata = job["metadata"]
        await self._call(
            "update",
            f"{PLURAL}/status",
            metadata["namespace"],
            self.custom.replace_namespaced_custom_object_status,
            GROUP,
            VERSION,
            metadata["namespace"],
            PLURAL,
            metadata["name"],
            body,
        )

    async def ensure_admission_policy(self, documents: list[dict[str, Any]]) -> None:
        """Create or update a ValidatingAdmissionPolicy and its binding."""
        admission = k8s.AdmissionregistrationV1Api(self.api)
        calls = {
            "ValidatingAdmissionPolicy": (
                admission.create_validating_admission_policy,
                admission.read_validating_admission_policy,
                admission.replace_validating_admission_policy,
            ),
            "ValidatingAdmissionPolicyBinding": (
                admission.create_validating_admission_policy_binding,
                admission.read_validating_admission_policy_binding,
                admission.replace_validating_admission_policy_binding,
            ),
        }
        for document in documents:
            create, read, replace = calls[document["kind"]]
            resource = f"{document['kind'].lower()}s"
            name = document["metadata"]["name"]
            try:
                await self._call("create", resource, None, create, document)
            except ApiException as error:
                if error.status != 409:
                    raise
                current = await self._call("get", resource, None, read, name)
                body = {
                    **document,
                    "metadata": {
                        **document["metadata"],
                        "resourceVersion": current.metadata.resource_version,
                    },
                }
                await self._call("update", resource, None, replace, name, body)

    async def post_event(self, job: dict[str, Any], event: JobEvent) -> None:
        metadata = job["metadata"]
        now = dt.datetime.now(dt.UTC)
        body = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(
                name=f"{metadata['name']}.{secrets.token_hex(8)}", namespace=metadata["namespace"]
            ),
            involved_object=k8s.V1ObjectReference(
                api_version=job["apiVersion"],
                kind=job["kind"],
                name=metadata["name"],
                namespace=metadata["namespace"],
                uid=metadata["uid"],
                resource_version=metadata.get("resourceVersion"),
            ),
            type=event.type,
            reason=event.reason,
            message=event.message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=k8s.V1EventSource(component="tfjob-operator"),
            reporting_component="tfjob.dev/operator",
            reporting_instance="tfjob-operator",
        )
        await self._call(
            "create",
            "events",
            metadata["namespace"],
            self.core.create_namespaced_event,
            metadata["namespace"],
            body,
        )


def _is_policy_denial(error: ApiException) -> bool:
    """A 403 from admission that retrying cannot fix (pod security, a policy), as opposed to
    RBAC (fixed by an administrator) or an exceeded quota (freed when other pods end)."""
    message = api_message(error)
    return "cannot create resource" not in message and "exceeded quota" not in message
