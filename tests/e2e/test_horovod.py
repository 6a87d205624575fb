"""Real Horovod over MPI through the operator: 2 workers x 2 slots, sshd in each worker pod's
network namespace, the launcher's mpirun using the operator's hostfile and generated keys."""

from __future__ import annotations

import re

import pytest
from kubernetes import client as k8s

from tests.integration.jobs import ON_LOCAL_NODE, apply, wait_for_condition

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator")]


def test_horovod_trains_on_four_ranks_over_ssh(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, local_node: str
) -> None:
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "tfjob.dev/v1alpha1",
            "kind": "TensorFlowJob",
            "metadata": {"name": "hvd"},
            "spec": {
                "entryScript": "train_horovod.py",
                "scriptParams": {"--epochs": 2, "--steps-per-epoch": 5},
                "distribution": {"backend": "mpi", "nodeCount": 2, "processCountPerNode": 2},
                "template": ON_LOCAL_NODE,
            },
        },
    )
    job = wait_for_condition(api_client, namespace, "hvd", "Succeeded", timeout=240)
    assert job["status"]["replicaStatuses"]["Launcher"]["succeeded"] == 1
    output = kubectl("logs", "-n", namespace, "hvd-launcher-0").stdout
    ranks = dict(re.findall(r"rank (\d) of 4 \(local \d of 2\) on (\S+)", output))
    assert sorted(ranks) == ["0", "1", "2", "3"], output[-3000:]
    # Two processes in each worker pod, by the pods' own hostnames (OpenMPI needs them).
    assert sorted(ranks.values()) == [
        "hvd-worker-0",
        "hvd-worker-0",
        "hvd-worker-1",
        "hvd-worker-1",
    ]
    checksums = re.findall(r"rank \d: loss \S+, average loss \S+, weights checksum (\S+)", output)
    assert len(checksums) == 4, output[-3000:]
    # Each rank trained on its own shard, yet all hold one model: gradients were all-reduced.
    assert len(set(checksums)) == 1, checksums
