"""GPUs asked of a pool the installation knows has none are refused at `kubectl apply`."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.jobs import estimator_job, kubeflow_job, replica
from tfjob_localcluster import processes

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]

REFUSAL = "spec.nodePool: node pool cpu has no GPUs"


def apply(kubectl, namespace: str, job: dict) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(job), check=False)


def wait_for_policy(kubectl, namespace: str) -> None:
    """The operator installs the policy at startup; the API server applies it shortly after."""
    probe = estimator_job("probe", useGpu=True, nodePool="cpu")
    processes.wait_until(
        lambda: (
            REFUSAL
            in kubectl(
                "apply",
                "--dry-run=server",
                "-n",
                namespace,
                "-f",
                "-",
                input=yaml.safe_dump(probe),
                check=False,
            ).stderr
        ),
        timeout=60,
        what="the node-pool admission policy to take effect",
        interval=0.5,
    )


@pytest.mark.parametrize(
    "job",
    [
        estimator_job("estimator-gpu-on-cpu", useGpu=True, nodePool="cpu"),
        kubeflow_job("kubeflow-gpu-on-cpu", {"Worker": replica(2, gpus=1)}, nodePool="cpu"),
    ],
    ids=["estimator", "kubeflow"],
)
def test_gpu_job_on_cpu_only_pool_is_refused(kubectl, namespace: str, job: dict) -> None:
    wait_for_policy(kubectl, namespace)
    result = apply(kubectl, namespace, job)
    assert result.returncode != 0
    assert REFUSAL in result.stderr
    assert "has no GPUs" in result.stderr


@pytest.mark.parametrize(
    "job",
    [
        estimator_job("gpu-on-gpu-pool", useGpu=True, nodePool="gpu-t4"),
        estimator_job("cpu-job-on-cpu-pool", nodePool="cpu"),
    ],
    ids=["gpu-pool", "cpu-job"],
)
def test_jobs_that_fit_their_pool_are_accepted(kubectl, namespace: str, job: dict) -> None:
    wait_for_policy(kubectl, namespace)
    result = apply(kubectl, namespace, job)
    assert result.returncode == 0, result.stderr
