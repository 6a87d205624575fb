"""The seed document's distributed examples through the Python API, run to their end: Horovod on
2 nodes and a parameter-server job with 2 workers, each the document's code with the import line
changed. (Its first example runs in test_training.py.) This machine has no GPU, so `use_gpu` is
left out and `pod_template` puts the pods on the node that really runs them; with
`use_gpu=True, compute_target='gpu-a100'` the same jobs land on the simulated GPU pool."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE
from tests.support.jobs import get_job

# The document's `from azureml.train.dnn import TensorFlow`, changed:
from tfjob_operator.client.sdk import Experiment, TensorFlow

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_documents_horovod_example_on_two_nodes(
    api_client: k8s.ApiClient, namespace: str, horovod_image: str
) -> None:
    exp = Experiment("horovod", namespace=namespace, api=api_client)
    # Tensorflow constructor
    tf_est = TensorFlow(
        source_directory=str(EXAMPLES / "my-horovod-proj"),
        script_params={"--epochs": 1},
        entry_script="train_horovod.py",  # relative path to your TensorFlow job
        node_count=2,
        process_count_per_node=1,
        distributed_backend="mpi",  # specifies Horovod backend
        pod_template={"spec": ON_REAL_NODE},
    )
    # submit the TensorFlow job
    run = exp.submit(tf_est)
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=240, out=out) == "Succeeded"
    shown = out.getvalue()
    # The launcher decides an MPI job: its log is the one followed, with every rank in it.
    ranks = dict(re.findall(r"rank (\d) of 2 \(local \d of 1\) on (\S+)", shown))
    assert sorted(ranks) == ["0", "1"], shown[-3000:]
    assert sorted(ranks.values()) == [f"{run.name}-worker-0", f"{run.name}-worker-1"]
    checksums = re.findall(r"rank \d: loss \S+, average loss \S+, weights checksum (\S+)", shown)
    assert len(checksums) == 2, shown[-3000:]
    assert len(set(checksums)) == 1, checksums  # one model: the gradients were all-reduced
    job = get_job(api_client, namespace, run.name)
    assert job["status"]["replicaStatuses"]["Launcher"]["succeeded"] == 1


def test_the_documents_parameter_server_example_with_two_workers(
    api_client: k8s.ApiClient, namespace: str, trainer_image: str
) -> None:
    exp = Experiment("ps", namespace=namespace, api=api_client)
    # Tensorflow constructor
    tf_est = TensorFlow(
        source_directory=str(EXAMPLES / "my-tf-proj"),
        script_params={"--epochs": 2},
        entry_script="train.py",  # relative path to your TensorFlow job
        node_count=2,
        worker_count=2,
        parameter_server_count=1,
        distributed_backend="ps",  # specifies parameter server backend
        pod_template={"spec": ON_REAL_NODE},
    )
    # submit the TensorFlow job
    run = exp.submit(tf_est)
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=240, out=out) == "Succeeded"
    shown = out.getvalue()
    # The chief decides: it coordinated both workers through the parameter server.
    assert "chief: coordinating" in shown, shown[-3000:]
    final = re.search(r"chief: final loss (\d+\.\d+)", shown)
    assert final, shown[-3000:]
    assert f"{run.get_metrics()['loss']:.6f}" == final.group(1)
    status = get_job(api_client, namespace, run.name)["status"]
    assert status["replicaStatuses"]["Chief"]["succeeded"] == 1
