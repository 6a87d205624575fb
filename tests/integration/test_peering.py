"""Two replicas of the operator (kopf peering through the chart's ClusterKopfPeering, with the
chart's identity) never both reconcile: the lower priority pauses, and takes over when the other
goes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.support.install import (
    CHART,
    find,
    manifest,
    operator_from_chart,
    release_name,
    restricted_namespace,
    service_account_kubeconfig,
    session_operator_stopped,
    wait_for_log,
)
from tests.support.jobs import apply, estimator_job, wait_for_condition, wait_for_pods
from tfjob_localcluster import control, processes
from tfjob_localcluster.operator_process import OperatorProcess

pytestmark = pytest.mark.timeout(180)

PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


@contextlib.contextmanager
def both_stopped_after(*operators: OperatorProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for process in operators:
            process.stop()


def peers(api_client: k8s.ApiClient, name: str) -> dict[str, Any]:
    peering = k8s.CustomObjectsApi(api_client).get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", name
    )
    return peering.get("status") or {}


def test_two_replicas_one_reconciles_the_other_takes_over(
    helm, kubectl, cluster, crd, operator, core, api_client, namespace, tmp_path
) -> None:
    release = release_name("peering")
    system = f"{release}-system"
    restricted_namespace(kubectl, system)
    try:
        helm(
            "install",
            release,
            str(CHART),
            "-n",
            system,
            "--wait",
            "--timeout",
            "90s",
            "--set",
            "replicaCount=2",
            timeout=120,
        )
        documents = manifest(helm, release, system)
        (peering,) = find(documents, "ClusterKopfPeering")
        name = peering["metadata"]["name"]
        (account,) = find(documents, "ServiceAccount")
        kubeconfig = service_account_kubeconfig(
            kubectl, cluster, account["metadata"]["name"], system, tmp_path / "sa.kubeconfig"
        )
        # As the Deployment runs them (its args include --peering and --priority=random), with
        # fixed priorities so that the test knows which one must win.
        low = operator_from_chart(
            documents,
            kubeconfig,
            tmp_path / "low",
            pod_name="replica-low",
            extra_args=("--priority=10",),
        )
        high = operator_from_chart(
            documents,
            kubeconfig,
            tmp_path / "high",
            pod_name="replica-high",
            extra_args=("--priority=20",),
        )
        assert f"--peering={name}" in low.extra_args
        with session_operator_stopped(operator), both_stopped_after(low, high):
            low.start()
            wait_for_log(low, RESUMED)  # alone, it works
            high.start()
            wait_for_log(low, PAUSED)  # a higher priority appeared: the low one pauses
            assert "replica-high" in low.log().split(PAUSED, 1)[1]
            assert set(peers(api_client, name)) == {"replica-low", "replica-high"}

            apply(
                kubectl,
                namespace,
                estimator_job(
                    "peered", distribution={"backend": "multiWorkerMirrored", "workerCount": 2}
                ),
            )
            names = {"peered-worker-0", "peered-worker-1"}
            pods = wait_for_pods(core, namespace, "peered", names)
            wait_for_condition(api_client, namespace, "peered", "Running")
            assert high.log().count("peered: created pod peered-") == 2
            assert "peered" not in low.log()
            created = core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=peered,reason=TFJobCreated"
            ).items
            assert len(created) == 1

            # The working replica goes (a rollout, a crash): the paused one takes over.
            high.stop()
            processes.wait_until(
                lambda: low.log().count(RESUMED) == 2,
                timeout=90,
                what="the paused replica to resume",
            )
            processes.wait_until(
                lambda: set(peers(api_client, name)) == {"replica-low"},
                timeout=30,
                what="the stopped replica to leave the peering",
            )
            control.end_pod(core, namespace, "peered-worker-0", exit_code=0)
            wait_for_condition(api_client, namespace, "peered", "Succeeded")
            wait_for_log(low, "peered: Succeeded")  # the low replica finished it
            # Nobody created the pods twice: the same two, never recreated.
            survivors = {
                p.metadata.name: p.metadata.uid
                for p in core.list_namespaced_pod(
                    namespace, label_selector="tfjob.dev/job-name=peered"
                ).items
            }
            assert survivors["peered-worker-0"] == pods["peered-worker-0"].metadata.uid
            assert "created pod" not in low.log()
    finally:
        helm("uninstall", release, "-n", system, "--wait", check=False, timeout=120)
        kubectl("delete", "namespace", system, "--wait=false", check=False)
