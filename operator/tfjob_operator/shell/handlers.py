"""Thin kopf adapters: kopf watches the jobs, and every event about one asks for one pass.

Pods and Services are watched by the operator's own informers (see ``informer``), started here.
Only kopf's low-level event handler is used: no diff base, no progress annotations, no finalizer
on the job (garbage collection removes the children). Handlers are async: kopf runs sync ones
in a thread pool, a handoff per event. The operator's
settings and kubeconfig reach the handlers through kopf's memo, set by the entry point.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import kopf

from tfjob_operator.api.labels import JOB_NAME_LABEL, OPERATOR_PREFIX
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from tfjob_operator.core.admission import node_pool_policy
from tfjob_operator.core.gang import pick_pod_group_api
from tfjob_operator.core.observed import PodObservation, controller_uid
from tfjob_operator.settings import OperatorSettings

from .controller import Controller
from .informer import Informer
from .kube import ApiError, Forbidden, Kube
from .peering import PeeringRef, PeeringSetup, follow

log = logging.getLogger(__name__)


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator has no change handlers (only indexes and event handlers), so kopf need not
    copy every watched body to diff it against a stored one nobody reads: on a burst of pod
    events that copy cost a tenth of the operator's CPU."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


async def with_gang_scheduling(kube: Kube, settings: OperatorSettings) -> OperatorSettings:
    """The settings with the PodGroup API the cluster serves, said once in the log."""
    if not settings.gang_scheduling:
        log.info("gang scheduling is off: the pods of a job are scheduled one by one")
        return settings.model_copy(update={"pod_group_api": None})
    if settings.pod_group_api is not None:
        return settings
    try:
        api = pick_pod_group_api(await kube.served_versions("scheduling.k8s.io"))
    except (ApiError, Forbidden) as error:
        log.warning("could not discover the PodGroup API (%s): pods start one by one", error)
        api = None
    if api is None:
        log.warning(
            "the cluster serves no PodGroup API (scheduling.k8s.io v1alpha2 or v1beta1: "
            "Kubernetes 1.36+ with the GenericWorkload and GangScheduling gates): the pods "
            "of a job are scheduled one by one, and runPolicy.schedulingPolicy.minAvailable "
            "has no effect"
        )
    else:
        log.info("gang scheduling through %s PodGroups", api)
    return settings.model_copy(update={"pod_group_api": api})


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All kopf tuning in one place, and the controller the handlers feed."""
    settings.posting.enabled = False  # events are ours, posted by the controller on transitions
    settings.persistence.finalizer = f"{OPERATOR_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=OPERATOR_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300

    operator_settings: OperatorSettings = (
        memo.get("settings") or OperatorSettings.from_environment()
    )
    # With namespaced Roles only, kopf must not try to list CRDs and namespaces cluster-wide.
    settings.scanning.disabled = not operator_settings.cluster_scanning
    kube = await Kube.connect(memo.get("kubeconfig"))
    memo.kube = kube
    namespaces = list(memo.get("namespaces") or [])
    operator_settings = await with_gang_scheduling(kube, operator_settings)
    controller = Controller(kube, operator_settings)
    pods = Informer(
        kube,
        "pods",
        JOB_NAME_LABEL,
        PodObservation.from_pod,
        controller.children_changed,
        namespaces,
        on_deleted=controller.pod_deleted,
    )
    services = Informer(
        kube,
        "services",
        JOB_NAME_LABEL,
        lambda service: controller_uid(service["metadata"]),
        controller.children_changed,
        namespaces,
    )
    # An MPI job's launcher mounts its hostfile ConfigMap: watched like the other children, by
    # its metadata alone. (Its Secret is never read: see decide._mpi_objects.)
    mounted = {
        kind: Informer(
            kube,
            resource,
            JOB_NAME_LABEL,
            lambda obj: (obj["metadata"]["name"], controller_uid(obj["metadata"])),
            controller.children_changed,
            namespaces,
            metadata_only=True,
        )
        for kind, resource in (("ConfigMap", "configmaps"),)
    }
    controller.watch_children(pods, services, mounted)
    memo.controller = controller
    memo.informers = [
        asyncio.create_task(informer.run()) for informer in (pods, services, *mounted.values())
    ]
    setup: PeeringSetup | None = memo.get("peering")
    if setup is not None:
        settings.peering.lifetime = setup.lifetime
        memo.informers += follow_peerings(kube, controller, setup, namespaces)
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


def follow_peerings(
    kube: Kube, controller: Controller, setup: PeeringSetup, namespaces: list[str]
) -> list[asyncio.Task[None]]:
    """Pause the controller's passes while kopf pauses (one peering object per watched
    namespace, or one cluster-wide); each scope starts paused until its object is read."""
    scopes: list[str | None] = list(dict.fromkeys(namespaces)) or [None]
    tasks = []
    for scope in scopes:
        controller.set_turn(scope, False, "reading the peering object first")
        tasks.append(
            asyncio.create_task(
                follow(
                    kube,
                    PeeringRef(setup.name, scope),
                    setup.identity,
                    setup.priority,
                    functools.partial(controller.set_turn, scope),
                )
            )
        )
    return tasks


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("informers") or []:
        task.cancel()
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.drain()
    kube: Kube | None = memo.get("kube")
    if kube is not None:
        await kube.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(
    event: dict[str, Any], namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    if event.get("type") == "DELETED":
        memo.controller.job_gone(namespace, name)
    else:
        memo.controller.job_seen(event["object"])
