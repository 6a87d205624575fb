"""Thin kopf adapters: every event about a job or one of its children asks for one reconcile.

Only kopf's low-level event handlers are used: no diff-base annotation, no progress
annotations, no finalizer on the job (garbage collection removes the children).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from . import metrics
from .admission import node_pool_policy
from .api.v1alpha1 import GROUP, PLURAL, VERSION
from .kube import Forbidden, Kube, api_message, load_client
from .reconcile import reconcile
from .settings import JOB_NAME_LABEL, OPERATOR_PREFIX, OperatorSettings
from .status import JobEvent
from .workqueue import RetryLater, WorkQueue

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
    # With namespaced Roles only, kopf must not try to list CRDs and namespaces cluster-wide.
    settings.scanning.disabled = not operator_settings.cluster_scanning
    kube = Kube(load_client(OPERATOR_SETTINGS["kubeconfig"]))
    states = metrics.JobStates()
    denied: dict[Any, str] = {}  # job -> the refusal already reported on it

    async def work(key: Any) -> None:
        namespace, name = key
        started = time.monotonic()
        try:
            state = await reconcile(kube, operator_settings, namespace, name)
        except Forbidden as refusal:
            metrics.RECONCILE_SECONDS.labels(result="error").observe(time.monotonic() - started)
            metrics.PERMISSION_DENIED.labels(verb=refusal.verb, resource=refusal.resource).inc()
            states.seen(key)
            await report_permission_problem(kube, namespace, name, refusal, denied)
            raise RetryLater(str(refusal)) from refusal
        except Exception:
            metrics.RECONCILE_SECONDS.labels(result="error").observe(time.monotonic() - started)
            states.seen(key)
            raise
        metrics.RECONCILE_SECONDS.labels(result="success").observe(time.monotonic() - started)
        denied.pop(key, None)
        if state is None:
            states.forget(key)
        else:
            states.set(key, state)

    memo.queue = WorkQueue(work)
    memo.kube = kube
    memo.job_states = states
    policy = node_pool_policy(operator_settings)
    if policy is not None and not operator_settings.manage_admission_policy:
        log.info("the node-pool admission policy is left to the installer")
    elif policy is not None:
        try:
            await kube.ensure_admission_policy(policy)
        except (ApiException, Forbidden) as error:
            # Without the permission (or when the installer ships the policy) jobs that ask for
            # GPUs on a CPU-only pool are still failed by reconcile, just later.
            reason = api_message(error) if isinstance(error, ApiException) else str(error)
            log.warning("could not install the node-pool admission policy: %s", reason)
    log.info("tfjob-operator ready (cluster domain %s)", operator_settings.cluster_domain)


async def report_permission_problem(
    kube: Kube, namespace: str, name: str, refusal: Forbidden, reported: dict[Any, str]
) -> None:
    """Tell the job's owner, once per distinct refusal, why nothing happens to their job."""
    key = (namespace, name)
    what = f"{refusal.verb} {refusal.resource}"
    if reported.get(key) == what:
        return
    where = f"in namespace {refusal.namespace}" if refusal.namespace else "cluster-wide"
    event = JobEvent(
        "Warning",
        "PermissionDenied",
        f"The operator is not allowed to {refusal.verb} {refusal.resource} {where}, so it "
        f"cannot run this job; it retries with backoff. An administrator must grant that verb "
        f"in the operator's ClusterRole or Role. API server: {refusal.message}",
    )
    if refusal.resource == PLURAL:
        return  # the job itself cannot be read: the operator's log is the only place left
    try:
        job = await kube.get_job(namespace, name)
        if job is None:
            return
        await kube.post_event(job, event)
    except Exception as error:  # noqa: BLE001 - the log line still says it
        log.warning("could not post event PermissionDenied for %s/%s: %s", namespace, name, error)
        return
    reported[key] = what


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
        memo.job_states.forget((namespace, name))
        return
    memo.queue.trigger((namespace, name))


@kopf.on.event("v1", "pods", labels={JOB_NAME_LABEL: kopf.PRESENT})
async def pod_event(labels: dict[str, str], namespace: str, memo: kopf.Memo, **_: Any) -> None:
    memo.queue.trigger((namespace, labels[JOB_NAME_LABEL]))


@kopf.on.event("v1", "services", labels={JOB_NAME_LABEL: kopf.PRESENT})
async def service_event(labels: dict[str, str], namespace: str, memo: kopf.Memo, **_: Any) -> None:
    memo.queue.trigger((namespace, labels[JOB_NAME_LABEL]))
