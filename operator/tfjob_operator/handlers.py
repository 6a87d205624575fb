"""Thin kopf adapters: the watches feed the cache, and every event asks for one pass.

Only kopf's indexes and low-level event handlers are used: no diff-base annotation, no progress
annotations, no finalizer on the job (garbage collection removes the children). The operator's
settings and kubeconfig reach the handlers through kopf's memo, set by the entry point.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .admission import node_pool_policy
from .api.v1alpha1 import GROUP, PLURAL, VERSION
from .controller import Controller
from .kube import ApiError, Forbidden, Kube
from .settings import JOB_NAME_LABEL, OPERATOR_PREFIX, OperatorSettings
from .status import PodObservation, controller_uid

log = logging.getLogger(__name__)

OUR_CHILDREN = {JOB_NAME_LABEL: kopf.PRESENT}


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    pods_by_job: kopf.Index[tuple[str, str], PodObservation],
    services_by_job: kopf.Index[tuple[str, str], str | None],
    **_: Any,
) -> None:
    """All kopf tuning in one place, and the controller the handlers feed."""
    settings.posting.enabled = False  # events are ours, posted by the controller on transitions
    settings.persistence.finalizer = f"{OPERATOR_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=OPERATOR_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=OPERATOR_PREFIX, key="last-handled-configuration"
    )
    settings.watching.label_selectors["pods"] = JOB_NAME_LABEL
    settings.watching.label_selectors["services"] = JOB_NAME_LABEL
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300

    operator_settings: OperatorSettings = (
        memo.get("settings") or OperatorSettings.from_environment()
    )
    # With namespaced Roles only, kopf must not try to list CRDs and namespaces cluster-wide.
    settings.scanning.disabled = not operator_settings.cluster_scanning
    kube = await Kube.connect(memo.get("kubeconfig"))
    memo.kube = kube
    memo.controller = Controller(kube, operator_settings, pods_by_job, services_by_job)
    policy = node_pool_policy(operator_settings)
    if policy is not None and not operator_settings.manage_admission_policy:
        log.info("the node-pool admission policy is left to the installer")
    elif policy is not None:
        try:
            await kube.ensure_admission_policy(policy)
        except (ApiError, Forbidden) as error:
            # Without the permission (or when the installer ships the policy) jobs that ask for
            # GPUs on a CPU-only pool are still failed by the operator, just later.
            log.warning("could not install the node-pool admission policy: %s", error)
    log.info("tfjob-operator ready (cluster domain %s)", operator_settings.cluster_domain)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.queue.drain()
    kube: Kube | None = memo.get("kube")
    if kube is not None:
        await kube.close()


@kopf.index("v1", "pods", labels=OUR_CHILDREN)
def pods_by_job(
    body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any
) -> dict[tuple[str, str], PodObservation]:
    """The cache of our pods: a small observation of each, keyed by its job."""
    return {(namespace, labels[JOB_NAME_LABEL]): PodObservation.from_pod(body)}


@kopf.index("v1", "services", labels=OUR_CHILDREN)
def services_by_job(
    meta: kopf.Meta, namespace: str, labels: kopf.Labels, **_: Any
) -> dict[tuple[str, str], str | None]:
    """The cache of our Services: the uid of the job that owns each, keyed by its job."""
    return {(namespace, labels[JOB_NAME_LABEL]): controller_uid(meta)}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(
    event: dict[str, Any], namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    if event.get("type") == "DELETED":
        memo.controller.job_gone(namespace, name)
    else:
        memo.controller.job_seen(event["object"])


@kopf.on.event("v1", "pods", labels=OUR_CHILDREN)
async def pod_event(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.children_changed(namespace, labels[JOB_NAME_LABEL])


@kopf.on.event("v1", "services", labels=OUR_CHILDREN)
async def service_event(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.children_changed(namespace, labels[JOB_NAME_LABEL])
