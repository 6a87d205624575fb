"""A namespace as shared clusters run them: Pod Security `restricted` enforced, and a
ResourceQuota that makes every container say its CPU and memory. An estimator job that ships
its code and installs packages (two containers the operator adds) is admitted whole when its
trainer is, and runs (kwok's nodes: admission is the point here; tests/e2e trains for real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.install import shared_cluster_namespace
from tests.support.jobs import estimator_job, job_pods, wait_for_condition

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]

RESTRICTED_TEMPLATE = {
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "tensorflow",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"cpu": "2", "memory": "2Gi"},
                },
            }
        ],
    }
}


@pytest.fixture
def restricted(core: k8s.CoreV1Api, namespace: str) -> str:
    """The test's namespace, made a shared cluster's: `restricted` enforced, limits quota'd."""
    shared_cluster_namespace(core, namespace, requests=("64", "256Gi"), limits=("128", "512Gi"))
    return namespace


def test_shipped_code_and_packages_are_admitted_under_restricted_pod_security_and_a_quota(
    cluster: Any,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    restricted: str,
    tmp_path: Path,
) -> None:
    from tfjob_operator.__main__ import main as tfjob_operator

    project = tmp_path / "proj"
    project.mkdir()
    (project / "train.py").write_text("print('hello')\n")
    job = estimator_job(
        "locked",
        pipPackages=["pandas==2.3.3"],
        distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
        template=RESTRICTED_TEMPLATE,
    )
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    submitted = tfjob_operator(
        [
            "submit", "-f", str(tmp_path / "job.yaml"), "--source", str(project),
            "-n", restricted, "--kubeconfig", str(cluster.kubeconfig),
        ]
    )  # fmt: skip
    assert submitted == 0
    body = wait_for_condition(api_client, restricted, "locked", "Running", timeout=60)
    assert not (body.get("status") or {}).get("waiting"), body["status"]
    pods = job_pods(core, restricted, "locked")
    assert sorted(pods) == ["locked-worker-0", "locked-worker-1"]
    for pod in pods.values():
        added = {c.name: c for c in pod.spec.init_containers}
        assert sorted(added) == ["tfjob-packages", "tfjob-source"]
        for container in added.values():
            assert container.security_context.allow_privilege_escalation is False
            assert container.security_context.capabilities.drop == ["ALL"]
            assert container.resources.limits == {"cpu": "2", "memory": "2Gi"}
