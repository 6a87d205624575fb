"""GPUs through Dynamic Resource Allocation on the real control plane: a simulated node publishes
two devices in a ResourceSlice (as a DRA driver's kubelet plugin would), a DeviceClass selects
them, and a job's pod template claims one per pod from a ResourceClaimTemplate. Every pod keeps
its claim, Kubernetes makes and allocates each pod's own ResourceClaim, and the scheduler puts
the pods where the devices are: the operator's nvidia.com/gpu logic stays out of the way."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.jobs import apply, job_pods, kubeflow_job, replica, wait_for_condition
from tfjob_localcluster import processes

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("operator")]

DRIVER = "gpu.dra.tfjob.dev"
NODE = "cpu-1"  # an untainted simulated node: only its devices make it the pods' node


@pytest.fixture(scope="module")
def devices(kubectl: Any) -> None:
    """Two devices on NODE and a DeviceClass for them (cluster-wide, made once)."""
    kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "DeviceClass",
                    "metadata": {"name": "tfjob-test-gpu"},
                    "spec": {
                        "selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]
                    },
                },
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceSlice",
                    "metadata": {"name": f"{NODE}-{DRIVER}"},
                    "spec": {
                        "driver": DRIVER,
                        "nodeName": NODE,
                        "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
                        "devices": [{"name": "gpu-0"}, {"name": "gpu-1"}],
                    },
                },
            ]
        ),
    )


def test_pods_that_claim_gpus_through_dra_keep_their_claims_and_land_on_the_devices(
    kubectl: Any,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    devices: None,
) -> None:
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "one-gpu"},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [
                            {"name": "gpu", "exactly": {"deviceClassName": "tfjob-test-gpu"}}
                        ]
                    }
                }
            },
        },
    )
    worker = replica(2)
    worker["template"]["spec"]["resourceClaims"] = [
        {"name": "gpu", "resourceClaimTemplateName": "one-gpu"}
    ]
    worker["template"]["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpu"}]}
    apply(kubectl, namespace, kubeflow_job("dra", {"Worker": worker}))
    wait_for_condition(api_client, namespace, "dra", "Running", timeout=120)
    pods = job_pods(core, namespace, "dra")
    assert sorted(pods) == ["dra-worker-0", "dra-worker-1"]
    for pod in pods.values():
        assert [(c.name, c.resource_claim_template_name) for c in pod.spec.resource_claims] == [
            ("gpu", "one-gpu")
        ]
        assert [c.name for c in pod.spec.containers[0].resources.claims] == ["gpu"]
        assert pod.spec.node_name == NODE  # where the devices are
        assert not pod.spec.node_selector  # no GPU node pool: the claim decides

    # Each pod got a claim of its own, allocated one device of NODE's two.
    def allocated() -> list[str]:
        claims = k8s.ResourceV1Api(api_client).list_namespaced_resource_claim(namespace).items
        return sorted(
            result.device
            for claim in claims
            if claim.status and claim.status.allocation
            for result in claim.status.allocation.devices.results
        )

    processes.wait_until(
        lambda: allocated() == ["gpu-0", "gpu-1"],
        timeout=30,
        what="one allocated device for each pod's claim",
        interval=0.5,
    )
