"""Real TensorFlow training through the operator: pods are containers of the trainer image on
the real node, with the TF_CONFIG, names and ports the operator wrote, and the job ends by
their exit codes."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE
from tests.support.jobs import apply, condition, get_job, job_pods, wait_for_condition
from tests.support.training import (
    DISRUPTIONS,
    RESTORED,
    EpochsSeen,
    checkpoint_claim,
    follow_until,
    restarted_for,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator")]


def estimator_job(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {"entryScript": "train.py", "template": {"spec": ON_REAL_NODE}, **spec},
    }


def logs(kubectl, namespace: str, pod: str) -> str:
    return kubectl("logs", "-n", namespace, pod).stdout


def test_single_node_job_runs_the_script_with_its_parameters(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, trainer_image: str
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job(
            "single",
            scriptParams={"--epochs": 1, "--learning-rate": 0.02, "--batch-size": 16},
        ),
    )
    job = wait_for_condition(api_client, namespace, "single", "Succeeded", timeout=240)
    assert job["status"]["replicaStatuses"]["Worker"]["succeeded"] == 1
    output = logs(kubectl, namespace, "single-worker-0")
    assert '"batch_size": 16' in output
    assert '"learning_rate": 0.02' in output
    assert "single 0: replicas in sync 1" in output
    assert re.search(r"single 0: final loss \d+\.\d+", output)
    pod = core.read_namespaced_pod("single-worker-0", namespace)
    assert pod.spec.node_name == "real-0"  # the real node
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_multi_worker_mirrored_trains_in_sync_on_two_workers(
    kubectl,
    cluster,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    trainer_image: str,
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job(
            "mwms",
            scriptParams={"--epochs": 2, "--steps-per-epoch": 5},
            distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
            # Every worker finishes the same fit: wait for all of them. (The default, worker 0,
            # would stop worker 1 if it ended a moment later, and its log with it.)
            successPolicy="AllWorkers",
        ),
    )
    wait_for_condition(api_client, namespace, "mwms", "Succeeded", timeout=240)
    losses = []
    for index in range(2):
        output = logs(kubectl, namespace, f"mwms-worker-{index}")
        assert f"worker {index}: replicas in sync 2" in output, output[-2000:]
        found = re.search(rf"worker {index}: final loss (\d+\.\d+)", output)
        assert found, output[-2000:]
        losses.append(found.group(1))
    # One model, trained together: all-reduce gives both workers the same loss.
    assert losses[0] == losses[1]
    # Worker 0 decided the job: its final loss, reported by tfjob_metrics' Keras callback
    # through its termination message, is on the job's status.
    metrics = get_job(api_client, namespace, "mwms")["status"]["metrics"]
    assert f"{metrics['loss']:.6f}" == losses[0]
    # `kubectl tfjob logs --all`: every pod's log, each line prefixed by its pod.
    import io

    from tfjob_operator.client.plugin import main as kubectl_tfjob

    out = io.StringIO()
    assert (
        kubectl_tfjob(
            ["logs", "mwms", "--all", "-n", namespace, "--kubeconfig", str(cluster.kubeconfig)],
            out=out,
        )
        == 0
    )
    for index in range(2):
        assert f"[mwms-worker-{index}] worker {index}: final loss {losses[0]}" in out.getvalue()
    pods = job_pods(core, namespace, "mwms")
    assert {p.status.phase for p in pods.values()} == {"Succeeded"}


EPOCHS = 200
STEPS = 20
TRIALS = int(os.environ.get("TFJOB_DISRUPTION_TRIALS", "1"))


@pytest.mark.parametrize("trial", range(TRIALS))
@pytest.mark.parametrize("how", list(DISRUPTIONS))
@pytest.mark.timeout(480)
def test_multi_worker_mirrored_restarts_as_a_whole_and_resumes_when_a_worker_is_taken(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    trainer_image: str,
    how: str,
    trial: int,
) -> None:
    """Worker 1 killed (SIGKILL, as the OOM killer does), evicted (kubectl drain) or deleted
    mid-training cannot rejoin worker 0's collective: the job restarts both as attempt 2 (the
    default restart scope of a collective), which resumes from the job's checkpoint and trains
    to the end. A kill spends the retry budget, an eviction or a delete does not (they are
    disruptions). An eviction or delete sends SIGTERM: both workers save at the next step and
    exit. A SIGKILL resumes from the last epoch's backup.

    Prints the time from the disruption to both workers training again and the epochs lost
    (TFJOB_DISRUPTION_TRIALS=5 runs each kind five times)."""
    name = f"phoenix-{how}"
    with checkpoint_claim(core, namespace) as (claim, directory):
        resumed_at = _taken_and_resumed(
            kubectl, core, api_client, namespace, name, claim, directory, how
        )
    print(f"\ndisruption: worker 1 {how} (trial {trial + 1}); {resumed_at}")


def _taken_and_resumed(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    name: str,
    claim: str,
    directory: Path,
    how: str,
) -> str:
    apply(
        kubectl,
        namespace,
        estimator_job(
            name,
            scriptParams={"--epochs": EPOCHS, "--steps-per-epoch": STEPS},
            distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
            environmentVariables={"PYTHONUNBUFFERED": "1"},
            successPolicy="AllWorkers",
            checkpoint={"persistentVolumeClaim": {"claimName": claim}},
        ),
    )
    from tfjob_localcluster import control

    _, disrupt = DISRUPTIONS[how]
    for index in range(2):
        control.wait_for_pod_phase(core, namespace, f"{name}-worker-{index}", "Running", 120)
    first = EpochsSeen(core, namespace, f"{name}-worker-0")
    follow_until(core, namespace, f"{name}-worker-1", f"Epoch 5/{EPOCHS}")
    taken = time.monotonic()
    assert disrupt(core, namespace, f"{name}-worker-1") is not False

    restarted_for(api_client, namespace, name, how, timeout=60)
    began = first.ended(timeout=60)
    assert began, "".join(first.lines[-30:])
    reached = max(began)  # the last epoch attempt 1 began
    assert reached >= 5, began
    second = []
    for index in range(2):
        control.wait_for_pod(
            core,
            namespace,
            f"{name}-worker-{index}",
            lambda p: (
                p.metadata.labels.get("tfjob.dev/attempt") == "2" and p.status.phase == "Running"
            ),
            timeout=120,
            what=f"worker {index} of attempt 2 running",
        )
        second.append(EpochsSeen(core, namespace, f"{name}-worker-{index}"))
    for seen in second:
        seen.training(timeout=120)
    again = time.monotonic() - taken
    job = wait_for_condition(api_client, namespace, name, "Succeeded", timeout=240)
    assert job["status"]["attempt"] == 2
    pods = job_pods(core, namespace, name)
    assert {p.metadata.labels["tfjob.dev/attempt"] for p in pods.values()} == {"2"}
    resumed = set()
    for index in range(2):
        epochs = second[index].ended(timeout=60)
        output = "".join(second[index].lines)
        assert f"checkpoints: /checkpoint/{name}, every epoch and on SIGTERM" in output, output
        assert re.search(rf"worker {index}: final loss \d+\.\d+", output), output[-2000:]
        restored = RESTORED.search(output)
        assert restored, output[-2000:]
        assert restored["step"] is not None, restored[0]
        epoch, step = int(restored["epoch"]), int(restored["step"])
        if how == "sigkill":
            # The last epoch's backup: the epoch the kill interrupted is trained again.
            assert (epoch, step) in {(reached - 1, STEPS), (reached, STEPS)}, (reached, output)
        else:
            # SIGTERM: every worker saved at the next step of the epoch under way.
            assert epoch == reached, (reached, output)
            assert 1 <= step <= STEPS, output
        first_epoch = epoch + 1 if step == STEPS else epoch
        # Attempt 2 went on where attempt 1 was, epoch after epoch, to the epochs asked for.
        assert epochs == list(range(first_epoch, EPOCHS + 1)), epochs
        resumed.add((epoch, step))
    assert len(resumed) == 1, resumed
    ((epoch, step),) = resumed
    # The backup goes once the training has ended.
    assert not (directory / name / "chief").exists()
    return (
        f"both workers of attempt 2 training again {again:.1f} s later; attempt 1 was in "
        f"epoch {reached}, attempt 2 resumed after epoch {epoch}, step {step} of {STEPS}"
    )


SHIPPED_SCRIPT = """\
import argparse, os
import numpy as np
import tensorflow as tf
from helpers.sizes import FEATURES

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()
x = np.random.default_rng(1).normal(size=(64, FEATURES)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = tf.keras.Sequential([tf.keras.layers.Input((FEATURES,)), tf.keras.layers.Dense(1)])
model.compile("sgd", "mse")
loss = model.fit(x, y, epochs=args.epochs, verbose=0).history["loss"][-1]
with open("data/greeting.txt") as greeting:
    print(f"shipped: {greeting.read().strip()} in {os.getcwd()}, features {FEATURES}, "
          f"{args.epochs} epochs, loss {loss:.4f}", flush=True)
"""


def test_a_source_directory_shipped_with_the_job_runs_on_its_pod(
    kubectl,
    cluster,
    api_client: k8s.ApiClient,
    namespace: str,
    trainer_image: str,
    tmp_path: Path,
) -> None:
    """The seed document's flow: a local folder with a script, a module it imports and a data
    file, submitted with the job; no image holds any of it."""
    import yaml

    from tfjob_operator.__main__ import main as tfjob_operator

    project = tmp_path / "my-tf-proj"
    (project / "helpers").mkdir(parents=True)
    (project / "data").mkdir()
    (project / "helpers" / "__init__.py").write_text("")
    (project / "helpers" / "sizes.py").write_text("FEATURES = 4\n")
    (project / "data" / "greeting.txt").write_text("hello from my-tf-proj\n")
    (project / "my_train.py").write_text(SHIPPED_SCRIPT)
    manifest = estimator_job("shipped", scriptParams={"--epochs": 3})
    manifest["spec"]["entryScript"] = "my_train.py"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(manifest))
    submitted = tfjob_operator(
        [
            "submit",
            "-f",
            str(tmp_path / "job.yaml"),
            "--source",
            str(project),
            "-n",
            namespace,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ]
    )
    assert submitted == 0
    wait_for_condition(api_client, namespace, "shipped", "Succeeded", timeout=240)
    output = logs(kubectl, namespace, "shipped-worker-0")
    assert re.search(
        r"shipped: hello from my-tf-proj in /workspace, features 4, 3 epochs, loss \d+\.\d+",
        output,
    ), output[-2000:]


def test_the_sdk_runs_the_documents_example_and_streams_its_output(
    api_client: k8s.ApiClient, namespace: str, trainer_image: str
) -> None:
    """The seed document's first example through the Python API, after changing its import
    line: examples/my-tf-proj (train.py and tfjob_metrics.py) shipped, script parameters, a run
    followed to its end, its final loss on the job."""
    import io

    from tfjob_operator.client.sdk import Experiment, TensorFlow

    project = Path(__file__).resolve().parents[2] / "examples" / "my-tf-proj"
    exp = Experiment("doc-example", namespace=namespace, api=api_client)
    script_params = {"--batch-size": 50, "--learning-rate": 0.01}
    tf_est = TensorFlow(
        source_directory=str(project),
        script_params=script_params,
        entry_script="train.py",
        environment_variables={"PYTHONUNBUFFERED": "1"},
        pod_template={"spec": ON_REAL_NODE},
    )
    run = exp.submit(tf_est)
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=240, out=out) == "Succeeded"
    shown = out.getvalue()
    assert f"[{run.name}] Running" in shown
    assert f"[{run.name}] Succeeded" in shown
    assert '"batch_size": 50' in shown, shown[-2000:]
    final = re.search(r"single 0: final loss (\d+\.\d+)", shown)
    assert final, shown[-2000:]
    assert f"{run.get_metrics()['loss']:.6f}" == final.group(1)


def test_parameter_server_job_succeeds_when_the_chief_does_and_servers_are_stopped(
    kubectl,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    trainer_image: str,
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model_dir.chmod(0o777)  # the image's user writes the checkpoints
    replica = {
        "replicas": 1,
        "restartPolicy": "Never",
        "template": {
            "spec": {
                **ON_REAL_NODE,
                "containers": [
                    {
                        "name": "tensorflow",
                        "image": trainer_image,
                        "command": [
                            "python",
                            "train.py",
                            "--epochs",
                            "2",
                            "--steps-per-epoch",
                            "5",
                            "--model-dir",
                            "/model",
                        ],
                        "volumeMounts": [{"name": "model", "mountPath": "/model"}],
                    }
                ],
                "volumes": [{"name": "model", "hostPath": {"path": str(model_dir)}}],
            }
        },
    }
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "tfjob.dev/v1alpha1",
            "kind": "TensorFlowJob",
            "metadata": {"name": "pss"},
            "spec": {
                "tfReplicaSpecs": {
                    "Chief": replica,
                    "PS": replica,
                    "Worker": {**replica, "replicas": 2},
                    "Evaluator": replica,
                }
            },
        },
    )
    job = wait_for_condition(api_client, namespace, "pss", "Succeeded", timeout=240)
    assert condition(job, "Succeeded")["reason"] == "TFJobSucceeded"
    chief = logs(kubectl, namespace, "pss-chief-0")
    assert re.search(r"chief: final loss \d+\.\d+", chief), chief[-2000:]
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == [
        "ckpt-1.index",
        "ckpt-2.index",
    ]
    # Parameter servers and workers never exit by themselves: the operator stopped them.
    from tfjob_localcluster import control

    for pod in ("pss-ps-0", "pss-worker-0", "pss-worker-1", "pss-evaluator-0"):
        control.wait_for_deletion(core.list_namespaced_pod, pod, namespace=namespace, timeout=60)
    assert set(job_pods(core, namespace, "pss")) == {"pss-chief-0"}


def test_failing_script_fails_the_job_with_its_exit_code(
    kubectl, api_client: k8s.ApiClient, namespace: str, trainer_image: str
) -> None:
    apply(kubectl, namespace, estimator_job("broken", scriptParams={"--data": "missing.csv"}))
    job = wait_for_condition(api_client, namespace, "broken", "Failed", timeout=240)
    message = condition(job, "Failed")["message"]
    assert "Worker 0 (pod broken-worker-0) exited with code 1 (Error)" in message
    assert "missing.csv not found" in logs(kubectl, namespace, "broken-worker-0")
