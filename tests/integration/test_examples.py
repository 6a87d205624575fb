"""Every manifest under examples/ is applied as a user would, and runs to success."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.jobs import wait_for_condition, wait_for_pods
from tfjob_localcluster import control
from tfjob_localcluster.nodepools import NODE_POOL_LABEL
from tfjob_operator.api.v1alpha1 import TensorFlowJobSpec
from tfjob_operator.core.builders import JobRef, desired_children
from tfjob_operator.core.estimator import compile_replica_specs, effective_mpi
from tfjob_operator.settings import OperatorSettings

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("operator")]

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_is_an_example_for_each_seed_case() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"single-node-gpu", "parameter-server", "multi-worker-mirrored", "horovod"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_to_success(
    path: Path, kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    manifest = yaml.safe_load(path.read_text())
    name = manifest["metadata"]["name"]
    kubectl("apply", "-n", namespace, "-f", str(path))
    spec = TensorFlowJobSpec.model_validate(manifest["spec"])
    expected = desired_children(
        JobRef(name, namespace, "uid"),
        compile_replica_specs(spec, OperatorSettings()),
        node_pool=spec.node_pool,
        settings=OperatorSettings(),
        mpi=effective_mpi(spec),
        ssh_secret=f"{name}-ssh-x",  # pod names and labels are what this test reads
    )
    pods = wait_for_pods(core, namespace, name, set(expected.pods))
    for pod_name, pod in pods.items():
        wants_gpu = any(
            ((c.resources and c.resources.limits) or {}).get("nvidia.com/gpu")
            for c in pod.spec.containers
        )
        pool = core.read_node(pod.spec.node_name).metadata.labels[NODE_POOL_LABEL]
        assert pool.startswith("gpu-") == bool(wants_gpu), pod_name
    # The chief (or worker 0), or the launcher of an MPI job, decides.
    deciding = next(
        n
        for n, p in expected.pods.items()
        if p["metadata"]["labels"].get("tfjob.dev/job-role") in ("chief", "launcher")
    )
    ending = [deciding]
    if spec.success_policy == "AllWorkers":
        ending = [
            n
            for n, p in expected.pods.items()
            if p["metadata"]["labels"]["tfjob.dev/replica-type"] == "worker"
        ]
    for pod_name in ending:
        control.end_pod(core, namespace, pod_name, exit_code=0)
    job = wait_for_condition(api_client, namespace, name, "Succeeded")
    assert job["status"]["state"] == "Succeeded"
