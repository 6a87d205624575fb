"""Where kopf earns its place: startup, shutdown, the liveness probe and peering.

kopf runs the process: its startup handler wires the operator (the connection, the PodGroup
API, the controller, the list-watches of the jobs and their children, the admission policy), its
cleanup handler stops it, it serves the liveness probe, and with peering it keeps this
replica's record in the peering object. It watches no resource: the jobs and their children go
through the operator's own list-watch loop (see ``listwatch``), one JSON parse an event, so no
diff base, progress annotation or finalizer of kopf's is ever written on a job. The operator's
settings and kubeconfig reach the handlers through kopf's memo, set by the entry point.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import urllib.parse
from typing import Any

import kopf

from tfjob_operator.api.labels import JOB_NAME_LABEL
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from tfjob_operator.core.admission import node_pool_policy
from tfjob_operator.core.gang import pick_pod_group_api
from tfjob_operator.core.observed import PodObservation, controlled_by_a_job, controller_uid
from tfjob_operator.settings import OperatorSettings

from . import metrics
from .controller import Controller, listed_job
from .informer import Informer, watch_scopes
from .kube import ApiError, Forbidden, Kube
from .listwatch import ListWatch
from .peering import PeeringRef, PeeringSetup, follow

log = logging.getLogger(__name__)


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
    settings.networking.request_timeout = 60  # kopf's own calls: peering
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
        accepts=controlled_by_a_job,
        foreseen=controller.pod_foreseen,
    )
    services = Informer(
        kube,
        "services",
        JOB_NAME_LABEL,
        # By name too: only the Service named as the job is its headless Service; another of
        # its label (a TensorBoard's, say) neither stands in for it nor holds its name.
        lambda service: (service["metadata"]["name"], controller_uid(service["metadata"])),
        controller.children_changed,
        namespaces,
        foreseen=controller.service_foreseen,
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
    for cache in (pods, services, *mounted.values()):
        metrics.CACHED.labels(resource=cache.resource).set_function(cache.__len__)
    controller.watch_children(pods, services, mounted)
    scopes, counts = watch_scopes(namespaces)
    jobs = ListWatch(
        kube,
        PLURAL,
        jobs_path,
        scopes,
        on_list=controller.jobs_listed,
        on_event=controller.job_event,
        keep=listed_job,  # ten thousand finished jobs: taken in page by page, frozen as they come
    )
    controller.watch_jobs(jobs, counts)
    memo.controller = controller
    memo.informers = [
        asyncio.create_task(watch.run()) for watch in (pods, services, *mounted.values(), jobs)
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


def jobs_path(scope: str | None, query: dict[str, str]) -> str:
    where = f"/namespaces/{scope}" if scope else ""
    return f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}?{urllib.parse.urlencode(query)}"


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
