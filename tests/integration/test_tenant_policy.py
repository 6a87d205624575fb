"""The chart's optional tenant policy, on the real API server: with it on, a tenant who may create
TensorFlowJobs (not pods) runs them only as the service accounts the admin listed, and with no
node access, in whichever template (either form) asks; what it allows is applied as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.support.install import find, helm_template
from tests.support.jobs import estimator_job, kubeflow_job, replica
from tfjob_localcluster import processes

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("crd")]


def refusal(kubectl: Any, namespace: str, job: dict[str, Any]) -> str:
    """What the API server says to a server-side dry run of ``job`` ('' when it accepts)."""
    result = kubectl(
        "apply",
        "-n",
        namespace,
        "--dry-run=server",
        "-f",
        "-",
        input=yaml.safe_dump(job),
        check=False,
    )
    return "" if result.returncode == 0 else result.stderr


def with_pod_spec(job: dict[str, Any], replica_type: str | None, **fields: Any) -> dict[str, Any]:
    if replica_type is None:
        job["spec"].setdefault("template", {}).setdefault("spec", {}).update(fields)
    else:
        job["spec"]["tfReplicaSpecs"][replica_type]["template"]["spec"].update(fields)
    return job


def test_the_tenant_policy_limits_service_accounts_and_node_access(
    kubectl: Any, namespace: str
) -> None:
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    documents = helm_template(
        "--set",
        "tenantPolicy.enabled=true",
        "--set",
        "tenantPolicy.serviceAccounts={default,trainer}",
        "--set-json",
        f"tenantPolicy.namespaceSelector={json.dumps(selector)}",
    )
    tenants = [
        document
        for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
        for document in find(documents, kind)
        if document["metadata"]["name"].endswith("-tenants")
    ]
    assert len(tenants) == 2
    text = yaml.safe_dump_all(tenants)
    kubectl("apply", "-f", "-", input=text)
    try:
        admin = with_pod_spec(estimator_job("as-admin"), None, serviceAccountName="admin")
        # A new policy takes a moment to reach the API server's admission.
        processes.wait_until(
            lambda: "serviceAccountName" in refusal(kubectl, namespace, admin),
            timeout=60,
            what="the tenant policy in force",
            interval=0.5,
        )
        said = refusal(kubectl, namespace, admin)
        assert "spec.template.spec.serviceAccountName: this cluster lets TensorFlowJobs" in said
        assert "default, trainer only" in said

        def types() -> dict[str, Any]:
            return {"Chief": replica(1), "Worker": replica(2), "PS": replica(1)}

        refused = {
            "deprecated serviceAccount": with_pod_spec(
                kubeflow_job("alias", types()), "Worker", serviceAccount="admin"
            ),
            "hostPath": with_pod_spec(
                kubeflow_job("host-path", types()),
                "PS",
                volumes=[{"name": "node", "hostPath": {"path": "/"}}],
            ),
            "hostNetwork": with_pod_spec(
                kubeflow_job("host-net", types()), "Chief", hostNetwork=True
            ),
            "hostPID": with_pod_spec(estimator_job("host-pid"), None, hostPID=True),
        }
        expected = {
            "deprecated serviceAccount": "tfReplicaSpecs.Worker.template.spec.serviceAccountName",
            "hostPath": "spec.tfReplicaSpecs.PS.template.spec: this cluster refuses",
            "hostNetwork": "spec.tfReplicaSpecs.Chief.template.spec: this cluster refuses",
            "hostPID": "spec.template.spec: this cluster refuses",
        }
        for what, job in refused.items():
            assert expected[what] in refusal(kubectl, namespace, job), what

        allowed = [
            estimator_job("plain"),
            with_pod_spec(
                kubeflow_job("as-trainer", types()),
                "Worker",
                serviceAccountName="trainer",
                volumes=[{"name": "scratch", "emptyDir": {}}],
                hostNetwork=False,
            ),
        ]
        for job in allowed:
            assert refusal(kubectl, namespace, job) == "", job["metadata"]["name"]
    finally:
        kubectl("delete", "-f", "-", "--ignore-not-found", input=text, check=False)
