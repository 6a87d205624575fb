"""Real Horovod over MPI through the operator, in containers of the Horovod image on the real
node: sshd and the ranks as the image's uid 1000, the launcher's mpirun using the operator's
hostfile, generated keys and the cluster DNS; Horovod's Keras callbacks and its
DistributedGradientTape; and, given a checkout of Horovod 0.28.1 (TFJOB_HOROVOD_EXAMPLES), its
own TensorFlow 2 examples."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest
import yaml
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
    finals = re.findall(r"rank \d: loss (\S+), average loss (\S+), weights checksum (\S+)", output)
    assert len(finals) == 4, output[-3000:]
    # Each rank trained on its own shard, yet all hold one model: gradients were all-reduced.
    assert len({checksum for _, _, checksum in finals}) == 1, finals
    # Horovod's MetricAverageCallback (it imports the standalone keras, tf_keras in the image)
    # made each rank's epoch loss the ranks' average.
    assert all(loss == average for loss, average, _ in finals), finals


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


# A custom training loop as Horovod's TensorFlow 2 examples write it: DistributedGradientTape
# all-reduces the gradients, the first step broadcasts rank 0's variables; argparse flags as
# its synthetic benchmark has them.
TAPE = """\
import argparse, os, socket
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--no-cuda", action="store_true")
parser.add_argument("tag")
args = parser.parse_args()
hvd.init()
rng = np.random.default_rng(hvd.rank())
x = rng.normal(size=(args.steps * args.batch_size, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
tf.random.set_seed(hvd.rank())  # different starting weights: the broadcast makes them one
model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(1)])
opt = tf.keras.optimizers.SGD(0.01 * hvd.size())

@tf.function
def step(xb, yb, first):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(xb, training=True) - yb))
    tape = hvd.DistributedGradientTape(tape)
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    if first:
        hvd.broadcast_variables(model.variables, root_rank=0)
    return loss

for i in range(args.steps):
    batch = slice(i * args.batch_size, (i + 1) * args.batch_size)
    loss = step(x[batch], y[batch], i == 0)
checksum = sum(float(tf.reduce_sum(w)) for w in model.get_weights())
print(f"tape {args.tag} rank {hvd.rank()} of {hvd.size()} no_cuda={args.no_cuda} "
      f"loss {float(loss):.4f} checksum {checksum:.6f}", flush=True)
"""


def test_a_distributed_gradient_tape_loop_submitted_with_kubectl_tfjob(
    kubectl, cluster, namespace: str, tmp_path: Path
) -> None:
    from tfjob_operator.client.plugin import main as kubectl_tfjob

    project = tmp_path / "tape-proj"
    project.mkdir()
    (project / "tape.py").write_text(TAPE)
    template = tmp_path / "real-node.yaml"
    template.write_text(yaml.safe_dump({"spec": ON_REAL_NODE}))
    out = io.StringIO()
    code = kubectl_tfjob(
        [
            "submit", str(project), "--name", "tape", "--entry-script", "tape.py",
            "--backend", "mpi", "--node-count", "2", "--pod-template", str(template),
            "-p", "steps=8", "-p", "no-cuda", "--wait", "--timeout", "240",
            "-n", namespace, "--kubeconfig", str(cluster.kubeconfig), "--", "run-1",
        ],
        out=out,
    )  # fmt: skip
    assert code == 0, out.getvalue()[-3000:]
    logs = kubectl("logs", "-n", namespace, "tape-launcher-0").stdout
    ranks = re.findall(r"tape run-1 rank (\d) of 2 no_cuda=True loss \S+ checksum (\S+)", logs)
    assert sorted(rank for rank, _ in ranks) == ["0", "1"], logs[-3000:]
    # Started apart (each rank its own seed), trained as one: the same weights on both.
    assert len({checksum for _, checksum in ranks}) == 1, ranks


# ----- Horovod's own examples (v0.28.1 examples/tensorflow2), given a checkout ---------------

EXAMPLES = os.environ.get("TFJOB_HOROVOD_EXAMPLES")
# Horovod publishes its examples only in its Git repository (not in the sdist or wheels this
# machine's package indexes serve), and the project carries no copy of them.
needs_examples = pytest.mark.skipif(
    not EXAMPLES, reason="set TFJOB_HOROVOD_EXAMPLES to a Horovod 0.28.1 examples/tensorflow2"
)
MNIST_DOWNLOAD = "tf.keras.datasets.mnist.load_data(path='mnist-%d.npz' % hvd.rank())"
# Pods have no egress: the same arrays MNIST has, made up, in place of the download.
SYNTHETIC_MNIST = """\
def _synthetic_mnist():
    import numpy as np
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(60000,), dtype=np.uint8)
    return (images, labels), (images[:10000], labels[:10000])
"""


def submit_example(
    kubectl, cluster, namespace: str, tmp_path: Path, name: str, script: str, *options: str
) -> str:
    """Submit one of Horovod's examples on 2 workers with `kubectl tfjob submit --wait`; the
    launcher's log (every rank's output)."""
    from tfjob_operator.client.plugin import main as kubectl_tfjob

    template = tmp_path / "real-node.yaml"
    template.write_text(yaml.safe_dump({"spec": ON_REAL_NODE}))
    out = io.StringIO()
    started = time.monotonic()
    code = kubectl_tfjob(
        [
            "submit", str(tmp_path / "examples"), "--name", name, "--entry-script", script,
            "--backend", "mpi", "--node-count", "2", "--pod-template", str(template),
            *options, "--wait", "-n", namespace, "--kubeconfig", str(cluster.kubeconfig),
        ],
        out=out,
    )  # fmt: skip
    print(f"\n{name}: {time.monotonic() - started:.0f} s\n{out.getvalue()[-2000:]}")
    log = kubectl("logs", "-n", namespace, f"{name}-launcher-0").stdout
    print(log[-1500:])
    assert code == 0, out.getvalue()[-2000:] + log[-3000:]
    return log


@needs_examples
@pytest.mark.timeout(3600)
def test_horovods_keras_mnist_example_with_metric_average_callback(
    kubectl, cluster, namespace: str, tmp_path: Path
) -> None:
    assert EXAMPLES is not None
    source = (Path(EXAMPLES) / "tensorflow2_keras_mnist.py").read_text()
    assert MNIST_DOWNLOAD in source
    assert "MetricAverageCallback" in source
    examples = tmp_path / "examples"
    examples.mkdir()
    head, _, rest = source.partition("\ndef main():")
    (examples / "tensorflow2_keras_mnist.py").write_text(
        head
        + SYNTHETIC_MNIST
        + "\ndef main():"
        + rest.replace(MNIST_DOWNLOAD, "_synthetic_mnist()")
    )
    log = submit_example(
        kubectl, cluster, namespace, tmp_path, "hvd-keras-mnist", "tensorflow2_keras_mnist.py"
    )
    assert "Epoch 24/24" in log, log[-3000:]  # rank 0's, every epoch's metrics averaged


@needs_examples
@pytest.mark.timeout(3600)
def test_horovods_synthetic_benchmark_with_distributed_gradient_tape(
    kubectl, cluster, namespace: str, tmp_path: Path
) -> None:
    assert EXAMPLES is not None
    source = (Path(EXAMPLES) / "tensorflow2_synthetic_benchmark.py").read_text()
    assert "DistributedGradientTape" in source
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "tensorflow2_synthetic_benchmark.py").write_text(source)  # unchanged
    log = submit_example(
        kubectl, cluster, namespace, tmp_path, "hvd-synthetic",
        "tensorflow2_synthetic_benchmark.py",
        "-p", "model=MobileNetV2", "-p", "batch-size=4", "-p", "num-warmup-batches=1",
        "-p", "num-batches-per-iter=2", "-p", "num-iters=2", "-p", "no-cuda",
    )  # fmt: skip
    assert re.search(r"Total img/sec on 2 CPU\(s\): \d", log), log[-3000:]
