"""Helpers for tests that install the operator the way users do: the Helm chart, deploy/, and the
operator process running with the chart's ServiceAccount identity and RBAC."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.support.constants import REPOSITORY
from tfjob_localcluster import binaries, processes
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.operator_process import OperatorProcess

CHART = REPOSITORY / "charts" / "tfjob-operator"
DEPLOY = REPOSITORY / "deploy"
INSTANCE_LABEL = "app.kubernetes.io/instance"

# Every kind the chart can create; what is left of a release after uninstall is listed by these.
NAMESPACED_KINDS = (
    "deployments.apps,replicasets.apps,pods,services,serviceaccounts,"
    "roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,"
    "kopfpeerings.kopf.dev,configmaps,secrets"
)
CLUSTER_KINDS = (
    "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,"
    "clusterkopfpeerings.kopf.dev,"
    "validatingadmissionpolicies.admissionregistration.k8s.io,"
    "validatingadmissionpolicybindings.admissionregistration.k8s.io"
)


def release_name(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


def helm_template(*args: str) -> list[dict[str, Any]]:
    """The chart rendered with the real helm binary (no cluster needed), as documents."""
    result = subprocess.run(
        [str(binaries.binary("helm")), "template", "rendered", str(CHART), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template {' '.join(args)}:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def helm_fails(*args: str) -> str:
    """helm template's error output for values it must refuse."""
    result = subprocess.run(
        [str(binaries.binary("helm")), "template", "rendered", str(CHART), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0, f"helm accepted {args}"
    return result.stderr


def manifest(helm: Any, release: str, namespace: str) -> list[dict[str, Any]]:
    """What a release installed, as documents."""
    text = helm("get", "manifest", release, "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def find(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def restricted_namespace(kubectl: Any, name: str) -> None:
    """A namespace that holds its pods to the restricted Pod Security profile."""
    kubectl("create", "namespace", name)
    kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )


def shared_cluster_namespace(
    core: k8s.CoreV1Api, namespace: str, *, requests: tuple[str, str], limits: tuple[str, str]
) -> None:
    """Make ``namespace`` a shared cluster's: Pod Security `restricted` enforced, and a
    ResourceQuota on CPU and memory (``requests`` and ``limits``: cpu, memory), so every
    container must say both."""
    core.patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }
            }
        },
    )
    core.create_namespaced_resource_quota(
        namespace,
        {
            "metadata": {"name": "team"},
            "spec": {
                "hard": {
                    "requests.cpu": requests[0],
                    "requests.memory": requests[1],
                    "limits.cpu": limits[0],
                    "limits.memory": limits[1],
                }
            },
        },
    )


def leftovers(kubectl: Any, release: str) -> list[str]:
    """Objects of every kind the chart creates that still carry the release's label."""
    selector = f"{INSTANCE_LABEL}={release}"
    found = []
    for kinds, scope in ((NAMESPACED_KINDS, ["-A"]), (CLUSTER_KINDS, [])):
        result = kubectl("get", kinds, *scope, "-l", selector, "-o", "name")
        found += [line for line in result.stdout.splitlines() if line]
    return found


def service_account_kubeconfig(
    kubectl: Any, cluster: LocalCluster, account: str, namespace: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount, with a token the API server issues
    (`kubectl create token`), exactly what the operator's pod would get mounted."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    user = f"system:serviceaccount:{namespace}:{account}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "service-account",
                "context": {"cluster": admin["clusters"][0]["name"], "user": user},
            }
        ],
        "current-context": "service-account",
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def operator_from_chart(
    documents: list[dict[str, Any]],
    kubeconfig: Path,
    log_dir: Path,
    *,
    pod_name: str = "tfjob-operator-test",
    extra_args: tuple[str, ...] = (),
    metrics_port: int | None = None,
) -> OperatorProcess:
    """The operator process as the chart's Deployment would run it: its arguments and
    environment, with the pod's own name, a free liveness port and (optionally) metrics port."""
    (deployment,) = find(documents, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a for a in container["args"] if a != "run" and not a.startswith("--liveness=")]
    env = {}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif variable["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[variable["name"]] = pod_name
    env.pop("TFJOB_METRICS_PORT", None)
    if metrics_port is not None:
        env["TFJOB_METRICS_PORT"] = str(metrics_port)
    log_dir.mkdir(parents=True, exist_ok=True)
    return OperatorProcess(
        kubeconfig=kubeconfig, log_dir=log_dir, extra_args=[*args, *extra_args], env=env
    )


@contextlib.contextmanager
def session_operator_stopped(operator: OperatorProcess) -> Iterator[None]:
    """The session's cluster-wide operator would reconcile this test's jobs too: stop it while
    the test's own operator runs, and bring it back after."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


def wait_for_log(process: OperatorProcess, text: str, timeout: float = 60) -> str:
    """Wait until the process has logged ``text``; return its whole log."""
    processes.wait_until(
        lambda: text in process.log(),
        timeout=timeout,
        what=f"{text!r} in the operator's log",
        interval=0.2,
    )
    return process.log()
