"""Real Horovod over MPI through the operator, in containers of the Horovod image on the real
node: sshd and the ranks as the image's uid 1000, the launcher's mpirun using the operator's
hostfile, generated keys and the cluster DNS."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE
from tests.support.jobs import apply, job_pods, wait_for_condition
from tests.support.training import (
    DISRUPTIONS,
    RESTORED,
    EpochsSeen,
    checkpoint_claim,
    follow_until,
    restarted_for,
)
from tfjob_localcluster import control
from tfjob_operator.client.sdk import Experiment, TensorFlow

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator", "horovod_image")]


def test_horovod_trains_on_four_ranks_over_ssh(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
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
                "template": {"spec": ON_REAL_NODE},
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


# Says which rank it is, as whom, and what it was given; then all-reduces across the ranks.
RANK_CHECK = """\
import os, socket
import horovod.tensorflow as hvd
import tensorflow as tf
hvd.init()
total = float(hvd.allreduce(tf.constant(float(hvd.rank() + 1)), op=hvd.Sum))
print(
    f"rank {hvd.rank()}: uid {os.getuid()} on {socket.gethostname()}"
    f" LEARNING_PLAN={os.environ.get('LEARNING_PLAN')} sum {total:g}",
    flush=True,
)
"""


def test_every_rank_runs_as_the_images_user_and_sees_the_jobs_variables(
    api_client: k8s.ApiClient, core: k8s.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    """Code shipped from a directory, as the seed document's users do; ranks started over SSH
    as uid 1000 (the operator gives the job's key to that user) see the job's variable."""
    (tmp_path / "rank_check.py").write_text(RANK_CHECK)
    estimator = TensorFlow(
        source_directory=str(tmp_path),
        entry_script="rank_check.py",
        node_count=2,
        process_count_per_node=1,
        distributed_backend="mpi",
        environment_variables={"LEARNING_PLAN": "two-nodes"},
        pod_template={"spec": ON_REAL_NODE},
    )
    run = Experiment("ranks", namespace=namespace, api=api_client).submit(estimator)
    out = io.StringIO()
    state = run.wait_for_completion(show_output=True, timeout=240, out=out)
    shown = out.getvalue()
    assert state == "Succeeded", shown[-3000:]
    who = sorted(re.findall(r"rank (\d): uid (\d+) on (\S+) LEARNING_PLAN=(\S+) sum (\S+)", shown))
    assert who == [
        ("0", "1000", f"{run.name}-worker-0", "two-nodes", "3"),
        ("1", "1000", f"{run.name}-worker-1", "two-nodes", "3"),
    ], shown[-3000:]
    pods = core.list_namespaced_pod(namespace, label_selector=f"tfjob.dev/job-name={run.name}")
    assert {p.spec.security_context.fs_group for p in pods.items} == {1000}


EPOCHS = 200


@pytest.mark.parametrize("how", list(DISRUPTIONS))
@pytest.mark.timeout(480)
def test_horovod_restarts_whole_and_resumes_when_a_worker_is_taken(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, how: str
) -> None:
    """A Horovod worker killed (SIGKILL), evicted or deleted mid-training takes a rank with
    it, and mpirun fails after it: the job restarts whole as attempt 2 (launcher and workers),
    whatever order the operator sees the two in. Attempt 2's rank 0 restores the last epoch's
    backup from the job's checkpoint, every rank goes on from that epoch, and the job trains
    to the end."""
    name = f"hvd-{how}"
    _, disrupt = DISRUPTIONS[how]
    with checkpoint_claim(core, namespace) as (claim, directory):
        apply(
            kubectl,
            namespace,
            {
                "apiVersion": "tfjob.dev/v1alpha1",
                "kind": "TensorFlowJob",
                "metadata": {"name": name},
                "spec": {
                    "entryScript": "train_horovod.py",
                    "scriptParams": {"--epochs": EPOCHS, "--steps-per-epoch": 20},
                    "distribution": {"backend": "mpi", "nodeCount": 2},
                    "template": {"spec": ON_REAL_NODE},
                    "checkpoint": {"persistentVolumeClaim": {"claimName": claim}},
                },
            },
        )
        launcher = f"{name}-launcher-0"
        control.wait_for_pod_phase(core, namespace, launcher, "Running", timeout=180)
        first = EpochsSeen(core, namespace, launcher)
        follow_until(core, namespace, launcher, f"Epoch 5/{EPOCHS}")
        taken = time.monotonic()
        assert disrupt(core, namespace, f"{name}-worker-1") is not False

        restarted_for(api_client, namespace, name, how, timeout=90)
        began = first.ended(timeout=60)
        assert began, "".join(first.lines[-30:])
        reached = max(began)
        control.wait_for_pod(
            core,
            namespace,
            launcher,
            lambda p: (
                p.metadata.labels.get("tfjob.dev/attempt") == "2" and p.status.phase == "Running"
            ),
            timeout=180,
            what="the launcher of attempt 2 running",
        )
        second = EpochsSeen(core, namespace, launcher)
        second.training(timeout=180)
        again = time.monotonic() - taken
        job = wait_for_condition(api_client, namespace, name, "Succeeded", timeout=300)
        assert job["status"]["attempt"] == 2
        pods = job_pods(core, namespace, name)
        assert {p.metadata.labels["tfjob.dev/attempt"] for p in pods.values()} == {"2"}
        epochs = second.ended(timeout=60)
        output = "".join(second.lines)
        restored = RESTORED.search(output)
        assert restored, output[-3000:]
        epoch = int(restored["epoch"])
        # The last epoch's backup: at most the epoch the disruption interrupted is trained
        # again, and attempt 2 trains from there to the epochs asked for.
        assert reached - 1 <= epoch <= reached, (reached, output[-3000:])
        assert epochs == list(range(epoch + 1, EPOCHS + 1)), epochs
        checksums = re.findall(r"weights checksum (\S+)", output)
        assert len(checksums) == 2, output[-3000:]
        assert len(set(checksums)) == 1, checksums
        # Trained to the end: the backup is gone, so the job made again starts afresh.
        assert not (directory / name).exists()
    print(
        f"\ndisruption: Horovod worker 1 {how}; attempt 2's ranks training again {again:.1f} s "
        f"later; attempt 1 was in epoch {reached}, attempt 2 resumed after epoch {epoch}"
    )
