"""What a user sees of the API through kubectl: explain, the short name, printer columns, and
an operator limited to the namespaces it is given."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from tests.support.jobs import (
    apply,
    estimator_job,
    get_job,
    job_pods,
    kubeflow_job,
    replica,
    wait_for_condition,
    wait_for_pods,
)
from tfjob_localcluster import control
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.operator_process import OperatorProcess

pytestmark = pytest.mark.timeout(180)


def explain(kubectl, path: str) -> str:
    """kubectl explain's text with its line wrapping undone."""
    return " ".join(kubectl("explain", path).stdout.split())


def test_kubectl_explain_teaches_the_api(kubectl, crd: str) -> None:
    spec = explain(kubectl, "tensorflowjob.spec")
    assert "Estimator form: the script every replica runs" in spec
    assert "Kubeflow form: a pod template per replica type" in spec
    distribution = explain(kubectl, "tfj.spec.distribution.backend")
    assert "multiWorkerMirrored (tf.distribute.MultiWorkerMirroredStrategy" in distribution
    policy = explain(kubectl, "tensorflowjob.spec.runPolicy.cleanPodPolicy")
    assert "Running (default; stops parameter servers" in policy


@pytest.mark.usefixtures("operator")
def test_kubectl_get_shows_state_and_ready_pods(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job("columns", distribution={"backend": "multiWorkerMirrored", "workerCount": 2}),
    )
    wait_for_pods(core, namespace, "columns", {"columns-worker-0", "columns-worker-1"})
    control.wait_for(
        core.list_namespaced_pod,
        lambda pods: (
            all(
                any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                for p in pods
            )
            or None
        ),
        timeout=30,
        what="both workers ready",
        namespace=namespace,
    )
    kubectl(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.status.ready}=2/2",
        "tfj/columns",
        "--timeout=30s",
    )
    table = kubectl("get", "tfj", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "READY", "AGE"]
    assert table[1].split()[:3] == ["columns", "Running", "2/2"]


def test_operator_limited_to_namespaces_leaves_others_alone(
    cluster: LocalCluster,
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    operator: OperatorProcess,
    tmp_path,
) -> None:
    watched, ignored = "scope-watched", "scope-ignored"
    for name in (watched, ignored):
        core.create_namespace({"metadata": {"name": name}})
    operator.stop()
    scoped = OperatorProcess(
        kubeconfig=cluster.kubeconfig, log_dir=tmp_path, extra_args=["-n", watched]
    )
    try:
        scoped.start()
        for name in (ignored, watched):
            control.wait_for(
                core.list_namespaced_service_account,
                lambda accounts: any(a.metadata.name == "default" for a in accounts) or None,
                timeout=30,
                what="default service account",
                namespace=name,
            )
            apply(kubectl, name, kubeflow_job("scoped", {"Worker": replica(1)}))
        wait_for_pods(core, watched, "scoped", {"scoped-worker-0"})
        wait_for_condition(api_client, watched, "scoped", "Running")
        assert job_pods(core, ignored, "scoped") == {}
        assert "status" not in get_job(api_client, ignored, "scoped")
    finally:
        scoped.stop()
        operator.start()
    # The cluster-wide operator, back, picks up the job the scoped one left alone.
    wait_for_pods(core, ignored, "scoped", {"scoped-worker-0"})
    for name in (watched, ignored):
        core.delete_namespace(name)
