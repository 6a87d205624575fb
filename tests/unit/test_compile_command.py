"""`tfjob-operator compile` shows a user what a short, estimator-style job becomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tfjob_operator.__main__ import main

pytestmark = pytest.mark.timeout(10)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "parameter-server.yaml"


def test_compile_prints_the_kubeflow_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "-f", str(EXAMPLE)]) == 0
    (job,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert job["apiVersion"] == "tfjob.dev/v1alpha1"
    assert job["metadata"]["name"] == "keras-parameter-server"
    replicas = job["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Chief": 1, "Worker": 2, "PS": 1}
    worker = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert worker["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert "resources" not in replicas["PS"]["template"]["spec"]["containers"][0]
    assert "entryScript" not in job["spec"]


def test_compile_with_pods_prints_each_pod_and_its_tf_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compile", "-f", str(EXAMPLE), "--pods"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["TensorFlowJob", "Service", "Pod", "Pod", "Pod", "Pod"]
    pods = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Pod"}
    assert set(pods) == {
        "keras-parameter-server-chief-0",
        "keras-parameter-server-worker-0",
        "keras-parameter-server-worker-1",
        "keras-parameter-server-ps-0",
    }
    env = pods["keras-parameter-server-ps-0"]["spec"]["containers"][0]["env"]
    config = json.loads(next(e["value"] for e in env if e["name"] == "TF_CONFIG"))
    assert config["task"] == {"type": "ps", "index": 0}
    assert sorted(config["cluster"]) == ["chief", "ps", "worker"]


@pytest.mark.parametrize("key", ["WORKER", "worker", "Workers"])
def test_compile_refuses_a_replica_type_it_does_not_know(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API server would prune the key and refuse the job; compile says why, by name."""
    job = {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": "typo"},
        "spec": {
            "tfReplicaSpecs": {
                key: {
                    "replicas": 2,
                    "template": {"spec": {"containers": [{"name": "tensorflow", "image": "tf"}]}},
                }
            }
        },
    }
    manifest = tmp_path / "typo.yaml"
    manifest.write_text(yaml.safe_dump(job))
    assert main(["compile", "-f", str(manifest), "--pods"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"typo: spec.tfReplicaSpecs: unknown replica type {key!r}" in captured.err
    assert "Chief, Master, Worker, PS, Evaluator, Launcher" in captured.err


def test_compile_with_pods_shows_what_the_operators_first_pass_creates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pods printed are the operator's own: its attempt label and the run policy's
    priority class are on them, which the builder alone does not add."""
    job = yaml.safe_load(EXAMPLE.read_text())
    job["spec"]["runPolicy"] = {"schedulingPolicy": {"priorityClass": "training-high"}}
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    assert main(["compile", "-f", str(manifest), "--pods"]) == 0
    pods = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "Pod"]
    assert len(pods) == 4
    for pod in pods:
        assert pod["metadata"]["labels"]["tfjob.dev/attempt"] == "1"
        assert pod["spec"]["priorityClassName"] == "training-high"


def test_compile_with_pods_shows_an_mpi_jobs_launcher_and_a_live_jobs_own_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The launcher, which the operator makes once the workers are Ready, is shown too; a job
    read back from the cluster keeps its uid and its key Secret's generated name, and the rest
    of its status is not taken for the first pass's."""
    job = {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": "hvd", "namespace": "ml", "uid": "0123abcd-ffff", "generation": 3},
        "spec": {
            "entryScript": "train_horovod.py",
            "distribution": {"backend": "mpi", "nodeCount": 2},
        },
        "status": {"state": "Failed", "attempt": 4, "sshSecret": "hvd-ssh-b7x2q"},
    }
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    assert main(["compile", "-f", str(manifest), "--pods"]) == 0
    children = [d for d in yaml.safe_load_all(capsys.readouterr().out)][1:]
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("ConfigMap", "hvd-mpi"),
        ("Service", "hvd"),
        ("Pod", "hvd-worker-0"),
        ("Pod", "hvd-worker-1"),
        ("Pod", "hvd-launcher-0"),
    ]
    launcher = children[-1]
    assert launcher["metadata"]["namespace"] == "ml"
    assert launcher["metadata"]["labels"]["tfjob.dev/attempt"] == "1"
    secrets = {v["secret"]["secretName"] for v in launcher["spec"]["volumes"] if "secret" in v}
    assert secrets == {"hvd-ssh-b7x2q"}
    assert launcher["metadata"]["ownerReferences"][0]["uid"] == "0123abcd-ffff"
    # A job not yet in the cluster: the name is the API server's to make up.
    del job["status"]
    manifest.write_text(yaml.safe_dump(job))
    assert main(["compile", "-f", str(manifest), "--pods"]) == 0
    launcher = [d for d in yaml.safe_load_all(capsys.readouterr().out)][-1]
    secrets = {v["secret"]["secretName"] for v in launcher["spec"]["volumes"] if "secret" in v}
    assert secrets == {"hvd-ssh-<generated>"}
