"""The operator process, run with the chart's ServiceAccount identity (a token the API server
issued, not admin), needs exactly the chart's RBAC: it runs jobs to success with it, and says
clearly, on the job and in its log, when a verb is missing."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
from tests.support.jobs import apply, estimator_job, get_job, wait_for_condition, wait_for_pods
from tfjob_localcluster import control, processes
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.operator_process import OperatorProcess

pytestmark = pytest.mark.timeout(180)

PROBLEM = re.compile(r"\[(WARNING|ERROR) *\]")


@dataclass
class Release:
    name: str
    namespace: str
    documents: list[dict[str, Any]]
    kubeconfig: Path

    @property
    def fullname(self) -> str:
        return f"{self.name}-tfjob-operator"


@contextlib.contextmanager
def installed(
    helm: Any, kubectl: Any, cluster: LocalCluster, tmp_path: Path, *values: str
) -> Iterator[Release]:
    """The chart installed in a namespace of its own; a kubeconfig with its ServiceAccount."""
    name = release_name("rbac")
    namespace = f"{name}-system"
    restricted_namespace(kubectl, namespace)
    try:
        helm(
            "install",
            name,
            str(CHART),
            "-n",
            namespace,
            "--wait",
            "--timeout",
            "90s",
            *values,
            timeout=120,
        )
        documents = manifest(helm, name, namespace)
        (account,) = find(documents, "ServiceAccount")
        kubeconfig = service_account_kubeconfig(
            kubectl, cluster, account["metadata"]["name"], namespace, tmp_path / "sa.kubeconfig"
        )
        yield Release(name, namespace, documents, kubeconfig)
    finally:
        helm("uninstall", name, "-n", namespace, "--wait", check=False, timeout=120)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@contextlib.contextmanager
def running(process: OperatorProcess) -> Iterator[OperatorProcess]:
    process.start()
    try:
        yield process
    finally:
        process.stop()


def run_to_success(
    process: OperatorProcess,
    kubectl: Any,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    name: str,
) -> str:
    """Run a two-worker job to success; the operator's log once it has said so."""
    apply(
        kubectl,
        namespace,
        estimator_job(name, distribution={"backend": "multiWorkerMirrored", "workerCount": 2}),
    )
    wait_for_pods(core, namespace, name, {f"{name}-worker-0", f"{name}-worker-1"})
    wait_for_condition(api_client, namespace, name, "Running")
    control.end_pod(core, namespace, f"{name}-worker-0", exit_code=0)
    wait_for_condition(api_client, namespace, name, "Succeeded")
    control.wait_for_deletion(core.list_namespaced_pod, f"{name}-worker-1", namespace=namespace)
    return wait_for_log(process, f"{namespace}/{name}: Succeeded")


def can_i(kubectl: Any, release: Release, *args: str) -> bool:
    result = kubectl("auth", "can-i", *args, kubeconfig=release.kubeconfig, check=False)
    return result.stdout.strip() == "yes"


def test_operator_with_the_charts_identity_runs_a_job_to_success(
    helm, kubectl, cluster, crd, operator, core, api_client, namespace, tmp_path
) -> None:
    with installed(helm, kubectl, cluster, tmp_path) as release:
        whoami = kubectl("auth", "whoami", kubeconfig=release.kubeconfig).stdout
        assert f"system:serviceaccount:{release.namespace}:{release.fullname}" in whoami
        assert can_i(kubectl, release, "create", "pods", "-n", namespace)
        assert not can_i(kubectl, release, "get", "pods", "-n", namespace)  # list, not get
        assert not can_i(kubectl, release, "get", "secrets", "-n", namespace)
        assert not can_i(kubectl, release, "create", "validatingadmissionpolicies")
        assert not can_i(kubectl, release, "*", "*")

        process = operator_from_chart(release.documents, release.kubeconfig, tmp_path / "op")
        with session_operator_stopped(operator), running(process):
            log = run_to_success(process, kubectl, core, api_client, namespace, "with-chart-rbac")
    assert PROBLEM.findall(log) == [], log


def test_namespaced_install_needs_no_cluster_wide_permission(
    helm, kubectl, cluster, crd, operator, core, api_client, namespace, tmp_path
) -> None:
    with installed(
        helm, kubectl, cluster, tmp_path, "--set", f"watchNamespaces={{{namespace}}}"
    ) as release:
        kinds = {d["kind"] for d in release.documents}
        assert "ClusterRole" not in kinds
        assert "ClusterRoleBinding" not in kinds
        assert can_i(kubectl, release, "create", "pods", "-n", namespace)
        assert not can_i(kubectl, release, "list", "pods", "--all-namespaces")
        assert not can_i(kubectl, release, "list", "customresourcedefinitions")
        assert not can_i(kubectl, release, "list", "namespaces")

        process = operator_from_chart(release.documents, release.kubeconfig, tmp_path / "op")
        assert f"--namespace={namespace}" in process.extra_args
        with session_operator_stopped(operator), running(process):
            log = run_to_success(process, kubectl, core, api_client, namespace, "namespaced")
    assert PROBLEM.findall(log) == [], log  # no kopf warnings about namespaces or CRDs


def without_verb(role: k8s.V1ClusterRole, resource: str, verb: str) -> k8s.V1ClusterRole:
    for rule in role.rules:
        if resource in rule.resources and verb in rule.verbs:
            rule.verbs = [v for v in rule.verbs if v != verb]
            role.rules = [r for r in role.rules if r.verbs]
            return role
    raise AssertionError(f"the chart grants no {verb} on {resource}")


ATTEMPT = re.compile(
    r"reconcile of (?P<job>\S+) failed \(attempt (?P<attempt>\d+)\): permission denied: "
    r'the operator may not (?P<verb>\w+) "(?P<resource>[^"]+)" .*; retrying in (?P<delay>\d+) s'
)


@pytest.mark.parametrize(
    ("resource", "verb"),
    [
        ("pods", "create"),
        ("tensorflowjobs/status", "patch"),
        # The control plane enforces owner references (OwnerReferencesPermissionEnforcement).
        ("tensorflowjobs/finalizers", "update"),
    ],
    ids=["create-pods", "update-status", "owner-references"],
)
def test_a_missing_verb_is_reported_on_the_job_and_retried_with_backoff(
    helm, kubectl, cluster, crd, operator, core, api_client, namespace, tmp_path, resource, verb
) -> None:
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    with installed(helm, kubectl, cluster, tmp_path) as release:
        original = rbac.read_cluster_role(release.fullname)
        rbac.replace_cluster_role(
            release.fullname, without_verb(rbac.read_cluster_role(release.fullname), resource, verb)
        )
        base, _, sub = resource.partition("/")
        subresource = [f"--subresource={sub}"] if sub else []
        processes.wait_until(
            lambda: not can_i(kubectl, release, verb, base, *subresource, "-n", namespace),
            timeout=30,
            what=f"RBAC to refuse {verb} {resource}",
        )
        process = operator_from_chart(release.documents, release.kubeconfig, tmp_path / "op")
        with session_operator_stopped(operator), running(process):
            apply(kubectl, namespace, estimator_job("denied"))
            job = f"{namespace}/denied"

            def attempts() -> list[re.Match[str]]:
                return [m for m in ATTEMPT.finditer(process.log()) if m["job"] == job]

            processes.wait_until(
                lambda: len(attempts()) >= 3, timeout=60, what="three refused attempts"
            )
            seen = attempts()
            assert {(m["verb"], m["resource"]) for m in seen} == {(verb, resource)}
            assert [int(m["attempt"]) for m in seen[:3]] == [1, 2, 3]
            assert [int(m["delay"]) for m in seen[:3]] == [1, 2, 4]  # backoff, not a busy loop
            assert "Traceback" not in process.log()

            # One Warning event on the job, not one per retry.
            events = control.wait_for(
                core.list_namespaced_event,
                lambda items: [e for e in items if e.reason == "PermissionDenied"] or None,
                timeout=30,
                what="a PermissionDenied event on the job",
                namespace=namespace,
                field_selector="involvedObject.name=denied,involvedObject.kind=TensorFlowJob",
            )
            (event,) = events
            assert event.type == "Warning"
            assert f"not allowed to {verb} {resource}" in event.message
            assert "ClusterRole or Role" in event.message
            assert event.count == 1

            # Granted again: the next retry goes through, without restarting the operator.
            original.metadata.resource_version = None
            rbac.replace_cluster_role(release.fullname, original)
            wait_for_condition(api_client, namespace, "denied", "Running", timeout=90)
            assert get_job(api_client, namespace, "denied")["status"]["state"] == "Running"
            after = core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=denied,reason=PermissionDenied"
            ).items
            assert len(after) == 1
