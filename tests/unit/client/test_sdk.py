"""The Python API in the estimator's shape: the seed document's three examples become the
TensorFlowJobs a person would write, and what the old API had that this one cannot do is
refused by name. No cluster (tests/integration/test_sdk.py submits them)."""

from __future__ import annotations

import pytest
import yaml

from tfjob_operator.api.v1alpha1 import TensorFlowJobSpec
from tfjob_operator.client.sdk import TensorFlow

pytestmark = pytest.mark.timeout(20)

compute_target = "gpu-a100"


def test_the_single_node_example_with_parameters_and_a_package() -> None:
    script_params = {"--batch-size": 50, "--learning-rate": 0.01}
    tf_est = TensorFlow(
        source_directory="./my-tf-proj",
        script_params=script_params,
        compute_target=compute_target,
        entry_script="train.py",
        pip_packages=["scikit-learn"],
        use_gpu=True,
    )
    assert tf_est.spec() == {
        "entryScript": "train.py",
        "arguments": ["--batch-size", "50", "--learning-rate", "0.01"],
        "useGpu": True,
        "pipPackages": ["scikit-learn"],
        "nodePool": "gpu-a100",
    }


def test_script_params_keep_their_order_and_bare_flags() -> None:
    """The SDK sends the ordered list: a scriptParams map would come back sorted by name."""
    tf_est = TensorFlow(
        entry_script="tensorflow2_synthetic_benchmark.py",
        script_params={"--model": "MobileNetV2", "--batch-size": 4, "--no-cuda": ""},
        arguments=["data/"],
    )
    spec = tf_est.spec()
    assert spec["arguments"] == [
        "--model", "MobileNetV2", "--batch-size", "4", "--no-cuda", "data/",
    ]  # fmt: skip
    assert "scriptParams" not in spec
    TensorFlowJobSpec.model_validate(spec)


def test_a_script_param_that_is_not_a_scalar_is_refused() -> None:
    with pytest.raises(ValueError, match=r"script_params\['--layers'\]"):
        TensorFlow(entry_script="train.py", script_params={"--layers": [1, 2]})


def test_packages_from_a_team_index_with_credentials_from_a_secret() -> None:
    tf_est = TensorFlow(
        entry_script="train.py",
        pip_packages=["team-utils==2.1"],
        pip_index_url="http://pypi.ml.svc:8080/simple",
        pip_index_secret="pypi-creds",
    )
    spec = tf_est.spec()
    assert spec["packageIndex"] == {
        "url": "http://pypi.ml.svc:8080/simple",
        "credentialsSecret": "pypi-creds",
    }
    TensorFlowJobSpec.model_validate(spec)


def test_a_checkpoint_claim_keeps_the_jobs_progress_across_restarts() -> None:
    tf_est = TensorFlow(
        entry_script="train.py",
        distributed_backend="multiWorkerMirrored",
        worker_count=2,
        checkpoint_claim="team-checkpoints",
    )
    spec = tf_est.spec()
    assert spec["checkpoint"] == {"persistentVolumeClaim": {"claimName": "team-checkpoints"}}
    assert TensorFlowJobSpec.model_validate(spec).checkpoint is not None


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"pip_index_url": "https://pypi.corp/simple"}, "need pip_packages"),
        (
            {"pip_packages": ["x"], "pip_index_secret": "creds"},
            "pip_index_secret needs pip_index_url",
        ),
    ],
)
def test_an_index_without_packages_or_a_secret_without_an_index_is_refused(
    arguments: dict, said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        TensorFlow(entry_script="train.py", **arguments)


def test_the_horovod_example_on_two_nodes() -> None:
    tf_est = TensorFlow(
        source_directory="./my-tf-proj",
        script_params={},
        compute_target=compute_target,
        entry_script="train.py",
        node_count=2,
        process_count_per_node=1,
        distributed_backend="mpi",
        use_gpu=True,
    )
    assert tf_est.spec()["distribution"] == {
        "backend": "mpi",
        "nodeCount": 2,
        "processCountPerNode": 1,
    }


def test_the_parameter_server_example() -> None:
    tf_est = TensorFlow(
        source_directory="./my-tf-proj",
        script_params={},
        compute_target=compute_target,
        entry_script="train.py",
        node_count=2,
        worker_count=2,
        parameter_server_count=1,
        distributed_backend="ps",
        use_gpu=True,
    )
    assert tf_est.spec()["distribution"] == {
        "backend": "parameterServer",
        "workerCount": 2,
        "parameterServerCount": 1,
    }


def test_the_yaml_is_a_valid_job_a_person_could_apply() -> None:
    tf_est = TensorFlow(
        entry_script="train.py", distributed_backend="multiWorkerMirrored", node_count=2
    )
    manifest = yaml.safe_load(tf_est.to_yaml("mwms"))
    assert manifest["apiVersion"] == "tfjob.dev/v1alpha1"
    assert manifest["kind"] == "TensorFlowJob"
    assert manifest["metadata"] == {"name": "mwms"}
    spec = TensorFlowJobSpec.model_validate(manifest["spec"])
    assert spec.distribution is not None
    assert spec.distribution.worker_count == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"conda_packages": ["scikit-learn"]}, "conda_packages is not supported"),
        ({"framework_version": "1.13"}, "does not support: framework_version"),
        ({"distributed_backend": "gloo"}, "distributed_backend='gloo'"),
        ({"node_count": 2}, "node_count > 1 needs a distributed_backend"),
        ({"process_count_per_node": 2, "distributed_backend": "ps"}, "process_count_per_node"),
        (
            {"distributed_backend": "ps", "node_count": 3, "worker_count": 2},
            "node_count=3 and worker_count=2 differ",
        ),
    ],
)
def test_what_cannot_be_done_is_refused_by_name(arguments: dict, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(")):
        TensorFlow(entry_script="train.py", **arguments)
