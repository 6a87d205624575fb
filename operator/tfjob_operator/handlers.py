"""Thin kopf adapters: every event about a job or one of its children asks for one reconcile.

Only kopf's low-level event handlers are used: no diff-base annotation, no progress
annotations, no finalizer on the job (garbage collection removes the children).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from .admission import node_pool_policy
from .api.v1alpha1 import GROUP, PLURAL, VERSION
from .kube import Kube, api_message, load_client
from .reconcile import reconcile
from .settings import JOB_NAME_LABEL, OPERATOR_PREFIX, OperatorSettings
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

# Set by the entry point before kopf starts (flags and environment).
OPERATOR_SETTINGS: dict[str, Any] = {"settings": None, "kubeconfig": None}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All kopf tuning in one place."""
    settings.posting.enabled = False  # events are ours, posted by reconcile on transitions
    settings.persistence.finalizer = f"{OPERATOR_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=OPERATOR_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=OPERATOR_PREFIX, key="last-handled-configuration"
    )
    settings.watching.label_selectors["pods"] = JOB_NAME_LABEL
    settings.watching.label_selectors["services"] = JOB_NAME_LABEL
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300

    operator_settings = OPERATOR_SETTINGS["settings"] or OperatorSettings.from_environment()
    kube = Kube(load_client(OPERATOR_SETTINGS["kubeconfig"]))

    async def work(key: Any) -> None:
        namespace, name = key
        await reconcile(kube, operator_settings, namespace, name)

    memo.queue = WorkQueue(work)
    memo.kube = kube
    policy = node_pool_policy(operator_settings)
    if policy is not None:
        try:
            await kube.ensure_admission_policy(policy)
        except ApiException as error:
            # Without the permission (or when the installer ships the policy) jobs that ask for
            # GPUs on a CPU-only pool are still failed by reconcile, just later.
            log.warning("could not install the node-pool admission policy: %s", api_message(error))
    log.info("tfjob-operator ready (cluster domain %s)", operator_settings.cluster_domain)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    queue: WorkQueue | None = getattr(memo, "queue", None)
    if queue is not None:
        await queue.drain()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(
    event: dict[str, Any], namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    if event.get("type") == "DELETED":
        memo.queue.forget((namespace, name))
        return
    memo.queue.trigger((namespace, name))


@kopf.on.event("v1", "pods", labels={JOB_NAME_LABEL: kopf.PRESENT})
async def pod_event(labels: dict[str, str], namespace: str, memo: kopf.Memo, **_: Any) -> None:
    memo.queue.trigger((namespace, labels[JOB_NAME_LABEL]))


@kopf.on.event("v1", "services", labels={JOB_NAME_LABEL: kopf.PRESENT})
async def service_event(labels: dict[str, str], namespace: str, memo: kopf.Memo, **_: Any) -> None:
    memo.queue.trigger((namespace, labels[JOB_NAME_LABEL]))
