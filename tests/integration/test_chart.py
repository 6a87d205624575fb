"""The Helm chart: lint and render with the real helm, refuse wrong values, ship least-privilege
RBAC, and install, upgrade and uninstall on the real control plane without leaving orphans."""

from __future__ import annotations

import ast
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.install import (
    CHART,
    find,
    helm_fails,
    helm_template,
    leftovers,
    manifest,
    release_name,
    restricted_namespace,
)
from tests.support.jobs import estimator_job
from tfjob_localcluster import binaries, processes
from tfjob_operator.api.v1alpha1 import PLURAL
from tfjob_operator.core.admission import node_pool_policy
from tfjob_operator.settings import OperatorSettings
from tfjob_operator.shell import kube as kube_module

pytestmark = pytest.mark.timeout(180)

POOLS = {"chart-cpu": {"gpu": False}, "chart-gpu": {"gpu": True}, "chart-cpu2": {"gpu": False}}


def helm_lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.binary("helm")), "lint", "--strict", str(CHART), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "replicaCount=3", "--set-json", f"nodePools.known={json.dumps(POOLS)}"],
        ["--set", "watchNamespaces={team-a,team-b}", "--set", "peering.enabled=true"],
        ["--set", "metrics.enabled=false", "--set", "logging.format=json"],
        ["--set", "tenantPolicy.enabled=true", "--set", "watchNamespaces={team-a}"],
    ],
    ids=["defaults", "replicas-and-pools", "namespaced", "no-metrics-json-logs", "tenant-policy"],
)
def test_helm_lint_and_template_pass(values: list[str]) -> None:
    result = helm_lint(*values)
    assert result.returncode == 0, result.stdout + result.stderr
    documents = helm_template(*values)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "ServiceAccount"} <= kinds


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "logging.format=xml"], "at '/logging/format': value must be one of"),
        (["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"),
        (["--set", "watchNamespace={a}"], "additional properties 'watchNamespace' not allowed"),
        (["--set", "watchNamespaces={Team_A}"], "at '/watchNamespaces/0'"),
        (["--set-json", 'nodePools.known={"cpu":{"gpus":false}}'], "missing property 'gpu'"),
        (["--set", "metrics.port=70000"], "at '/metrics/port'"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
    ],
    ids=["log-format", "replicas", "typo", "namespace-name", "pool", "port", "pull-policy"],
)
def test_wrong_values_are_refused_with_a_message(values: list[str], message: str) -> None:
    assert message in helm_fails(*values)


def env_of(documents: list[dict[str, Any]]) -> dict[str, str | None]:
    (deployment,) = find(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_gang_scheduling_can_be_turned_off_with_its_permission() -> None:
    documents = helm_template("--set", "gangScheduling.enabled=false")
    (cluster_role,) = find(documents, "ClusterRole")
    assert ("scheduling.k8s.io", "podgroups", "create", "") not in rules(cluster_role)
    assert env_of(documents)["TFJOB_GANG_SCHEDULING"] == "false"
    assert env_of(helm_template())["TFJOB_GANG_SCHEDULING"] == "true"


def test_queueing_can_be_turned_off_and_needs_no_permission() -> None:
    on, off = helm_template(), helm_template("--set", "queueing.enabled=false")
    assert env_of(on)["TFJOB_QUEUEING"] == "true"
    assert env_of(off)["TFJOB_QUEUEING"] == "false"
    (role_on,), (role_off,) = find(on, "ClusterRole"), find(off, "ClusterRole")
    assert rules(role_on) == rules(role_off)


def test_a_default_package_index_reaches_the_operator() -> None:
    assert "TFJOB_PACKAGE_INDEX_URL" not in env_of(helm_template())
    env = env_of(
        helm_template(
            "--set",
            "packageIndex.url=https://pypi.corp/simple",
            "--set",
            "packageIndex.credentialsSecret=corp-pypi",
        )
    )
    assert env["TFJOB_PACKAGE_INDEX_URL"] == "https://pypi.corp/simple"
    assert env["TFJOB_PACKAGE_INDEX_SECRET"] == "corp-pypi"
    assert "/packageIndex/url" in helm_fails("--set", "packageIndex.url=ftp://pypi.corp")
    # A token in the URL would reach every job's pods: the chart refuses it.
    token = helm_fails("--set", "packageIndex.url=https://ci:t0ken@pypi.corp/simple")
    assert "/packageIndex/url" in token


def test_the_horovod_image_user_reaches_the_operator_and_null_means_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def setting(*values: str) -> int | None:
        value = env_of(helm_template(*values))["TFJOB_DEFAULT_HOROVOD_IMAGE_USER"]
        monkeypatch.setenv("TFJOB_DEFAULT_HOROVOD_IMAGE_USER", value or "")
        return OperatorSettings.from_environment().default_horovod_image_user

    assert setting() == 1000
    assert setting("--set", "trainerImages.horovodUser=2000") == 2000
    assert setting("--set", "trainerImages.horovodUser=null") is None
    assert "/trainerImages/horovodUser" in helm_fails("--set", "trainerImages.horovodUser=0")


def rules(document: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or '') for every grant of a (Cluster)Role."""
    granted = set()
    for rule in document["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [""]:
                        granted.add((group, resource, verb, name))
    return granted


JOB_RULES = {
    ("tfjob.dev", "tensorflowjobs", "list", ""),
    ("tfjob.dev", "tensorflowjobs", "watch", ""),
    ("tfjob.dev", "tensorflowjobs", "delete", ""),
    ("tfjob.dev", "tensorflowjobs/status", "patch", ""),
    # Children block their job's deletion: OwnerReferencesPermissionEnforcement asks for it.
    ("tfjob.dev", "tensorflowjobs/finalizers", "update", ""),
    ("", "pods", "list", ""),
    ("", "pods", "watch", ""),
    ("", "pods", "create", ""),
    ("", "pods", "delete", ""),
    ("", "services", "list", ""),
    ("", "services", "watch", ""),
    ("", "services", "create", ""),
    ("", "events", "create", ""),
    # MPI jobs: the SSH key Secret, created under a generated name and never read; the
    # hostfile ConfigMap, watched (its metadata) to be made again when gone.
    ("", "secrets", "create", ""),
    ("", "configmaps", "list", ""),
    ("", "configmaps", "watch", ""),
    ("", "configmaps", "create", ""),
    # Gang scheduling: a PodGroup per attempt, read when its name is taken.
    ("scheduling.k8s.io", "podgroups", "create", ""),
    ("scheduling.k8s.io", "podgroups", "get", ""),
}


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses() -> None:
    documents = helm_template(
        "--set", "replicaCount=2", "--set-json", f"nodePools.known={json.dumps(POOLS)}"
    )
    (cluster_role,) = find(documents, "ClusterRole")
    assert rules(cluster_role) == JOB_RULES | {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", ""),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch", ""),
        ("kopf.dev", "clusterkopfpeerings", "list", ""),
        ("kopf.dev", "clusterkopfpeerings", "watch", ""),
        ("kopf.dev", "clusterkopfpeerings", "patch", "rendered-tfjob-operator"),
    }
    assert find(documents, "Role") == []
    (binding,) = find(documents, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    # The chart ships the admission policy; the operator is told not to (and needs no RBAC).
    (deployment,) = find(documents, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TFJOB_MANAGE_ADMISSION_POLICY"] == "false"
    assert env_of(documents)["TFJOB_CLUSTER_SCANNING"] == "true"
    assert json.loads(env_of(documents)["TFJOB_NODE_POOLS"]) == POOLS


def test_namespaced_rbac_grants_nothing_cluster_wide() -> None:
    documents = helm_template("--set", "watchNamespaces={team-a,team-b}", "--set", "replicaCount=2")
    assert find(documents, "ClusterRole") == []
    assert find(documents, "ClusterRoleBinding") == []
    roles = find(documents, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules(role) == JOB_RULES | {
            ("kopf.dev", "kopfpeerings", "list", ""),
            ("kopf.dev", "kopfpeerings", "watch", ""),
            ("kopf.dev", "kopfpeerings", "patch", "rendered-tfjob-operator"),
        }
    assert sorted(p["metadata"]["namespace"] for p in find(documents, "KopfPeering")) == [
        "team-a",
        "team-b",
    ]
    (deployment,) = find(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=team-a" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TFJOB_CLUSTER_SCANNING"] == "false"


def test_no_wildcards_no_admin_no_escalation_anywhere() -> None:
    for values in ([], ["--set", "watchNamespaces={a}", "--set", "replicaCount=2"]):
        for document in helm_template(*values):
            if document["kind"] in ("ClusterRole", "Role"):
                for group, resource, verb, _ in rules(document):
                    assert "*" not in (group, resource, verb)
                    assert verb not in ("escalate", "bind", "impersonate")
                    assert resource not in ("roles", "clusterroles", "rolebindings")
                    assert not (resource == "secrets" and verb in ("get", "list", "watch"))
            if document["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                assert document["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")


def calls_made_by_kube() -> set[tuple[str, str]]:
    """(verb, resource) of every call kube.py makes through `_call` (its create map expanded)."""
    tree = ast.parse(Path(kube_module.__file__).read_text())
    kinds: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and all(isinstance(k, ast.Constant) for k in node.keys):
            keys = [k.value for k in node.keys]  # type: ignore[union-attr]
            if "Pod" in keys:
                kinds = keys
    found = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "_call"):
            continue
        verb_node, resource_node = node.args[0], node.args[1]
        assert isinstance(verb_node, ast.Constant)
        verb = verb_node.value
        text = ast.unparse(resource_node)
        if isinstance(resource_node, ast.Constant):
            found.add((verb, resource_node.value))
        elif text == "PLURAL":
            found.add((verb, PLURAL))
        elif "PLURAL" in text and "/status" in text:
            found.add((verb, f"{PLURAL}/status"))
        elif "kind.lower()" in text:
            found |= {(verb, f"{kind.lower()}s") for kind in kinds}
        # else: the admission policy's own calls, which the chart's operator never makes
    return found


def test_rbac_covers_every_call_the_operator_makes() -> None:
    """When kube.py starts calling something new, the chart must grant it (or this fails)."""
    (cluster_role,) = find(helm_template(), "ClusterRole")
    granted = {(resource, verb) for _, resource, verb, _ in rules(cluster_role)}
    missing = {(verb, r) for verb, r in calls_made_by_kube() if (r, verb) not in granted}
    assert missing == set(), (
        f"kube.py makes calls the chart does not grant: {sorted(missing)}. Add them to "
        "tfjob-operator.jobRules in charts/tfjob-operator/templates/_helpers.tpl (and to "
        "JOB_RULES here), then `make manifests`; without them the installed operator reports "
        "PermissionDenied on every job that needs them."
    )


def test_chart_admission_policy_is_the_operators_policy() -> None:
    """The policy the chart renders equals the one the operator would install itself."""
    documents = helm_template("--set-json", f"nodePools.known={json.dumps(POOLS)}")
    (policy,) = find(documents, "ValidatingAdmissionPolicy")
    (binding,) = find(documents, "ValidatingAdmissionPolicyBinding")
    expected_policy, expected_binding = node_pool_policy(
        OperatorSettings.model_validate({"node_pools": POOLS})
    )
    assert policy["spec"] == expected_policy["spec"]
    assert binding["spec"] == {**expected_binding["spec"], "policyName": policy["metadata"]["name"]}
    assert "matchResources" not in binding["spec"]
    # None without a CPU-only pool, or when turned off.
    assert find(helm_template(), "ValidatingAdmissionPolicy") == []
    off = helm_template(
        "--set-json",
        f"nodePools.known={json.dumps(POOLS)}",
        "--set",
        "admissionPolicy.enabled=false",
    )
    assert find(off, "ValidatingAdmissionPolicy") == []
    # Namespaced: only the jobs of the watched namespaces are checked.
    scoped = helm_template(
        "--set-json", f"nodePools.known={json.dumps(POOLS)}", "--set", "watchNamespaces={a,b}"
    )
    (scoped_binding,) = find(scoped, "ValidatingAdmissionPolicyBinding")
    selector = scoped_binding["spec"]["matchResources"]["namespaceSelector"]
    assert selector["matchExpressions"][0]["values"] == ["a", "b"]


def test_deployment_is_hardened() -> None:
    (deployment,) = find(helm_template(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TFJOB_METRICS_PORT"] == "8081"
    (service,) = find(helm_template(), "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def refused(kubectl: Any, namespace: str, job: dict[str, Any]) -> str:
    """The API server's refusal of a dry-run create ('' when accepted)."""
    result = kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(job),
        check=False,
    )
    return result.stderr if result.returncode else ""


def test_install_upgrade_uninstall_on_the_control_plane(
    helm, kubectl, crd: str, api_client: k8s.ApiClient, namespace: str
) -> None:
    release = release_name("chart")
    system = f"{release}-system"
    restricted_namespace(kubectl, system)
    gpu_on_cpu_pool = estimator_job("gpu-on-chart-cpu", useGpu=True, nodePool="chart-cpu")
    try:
        started = time.monotonic()
        installed = helm(
            "install",
            release,
            str(CHART),
            "-n",
            system,
            "--wait",
            "--timeout",
            "90s",
            "--set-json",
            f"nodePools.known={json.dumps(POOLS)}",
            timeout=120,
        )
        print(f"\nhelm install --wait: {time.monotonic() - started:.1f} s")
        assert "STATUS: deployed" in installed.stdout
        assert f"deployment/{release}-tfjob-operator" in installed.stdout  # NOTES.txt
        apps = k8s.AppsV1Api(api_client)
        deployment = apps.read_namespaced_deployment(f"{release}-tfjob-operator", system)
        assert deployment.status.available_replicas == 1  # admitted as restricted, on a kwok node
        # The chart's admission policy refuses GPUs on its CPU-only pool.
        processes.wait_until(
            lambda: (
                "node pool chart-cpu has no GPUs" in refused(kubectl, namespace, gpu_on_cpu_pool)
            ),
            timeout=30,
            what="the chart's admission policy to take effect",
            interval=0.5,
        )

        # Two replicas: peering turns on, with its peering object and RBAC.
        helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            system,
            "--wait",
            "--timeout",
            "90s",
            "--reuse-values",
            "--set",
            "replicaCount=2",
            timeout=120,
        )
        documents = manifest(helm, release, system)
        assert [p["metadata"]["name"] for p in find(documents, "ClusterKopfPeering")] == [
            f"{release}-tfjob-operator"
        ]
        kubectl("get", "clusterkopfpeering", f"{release}-tfjob-operator")
        deployment = apps.read_namespaced_deployment(f"{release}-tfjob-operator", system)
        assert deployment.status.available_replicas == 2
        assert "--priority=random" in deployment.spec.template.spec.containers[0].args

        # Back to one replica, no metrics, no policy: what the upgrade drops is deleted.
        helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            system,
            "--wait",
            "--timeout",
            "90s",
            "--set",
            "metrics.enabled=false",
            timeout=120,
        )
        kinds = {d["kind"] for d in manifest(helm, release, system)}
        assert kinds == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"}
        assert set(leftovers(kubectl, release)) >= {
            f"deployment.apps/{release}-tfjob-operator",
            f"clusterrole.rbac.authorization.k8s.io/{release}-tfjob-operator",
        }
        for gone in ("clusterkopfpeering", "validatingadmissionpolicy", "service/"):
            assert not [o for o in leftovers(kubectl, release) if o.startswith(gone)]
        assert refused(kubectl, namespace, gpu_on_cpu_pool) == ""
    finally:
        helm(
            "uninstall",
            release,
            "-n",
            system,
            "--wait",
            "--timeout",
            "90s",
            check=False,
            timeout=120,
        )
    # Nothing of the release is left once garbage collection has removed the pods.
    processes.wait_until(
        lambda: leftovers(kubectl, release) == [],
        timeout=60,
        what=f"every object of release {release} to go",
        interval=0.5,
    )
    # The CRDs stay by design (helm never deletes crds/): deleting them would delete every job.
    for name in ("tensorflowjobs.tfjob.dev", "clusterkopfpeerings.kopf.dev"):
        kubectl("get", "crd", name)
    kubectl("delete", "namespace", system, "--wait=false")
