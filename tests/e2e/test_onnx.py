"""ONNX out of a training job: the job trains with real TensorFlow, exports the model with
images/trainer/tfjob_onnx.py to a volume, and the file, loaded here with onnxruntime, gives the
Keras model's outputs (computed in the job, on the same inputs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE
from tests.support.jobs import apply, wait_for_condition

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator")]

TRAINER = Path(__file__).resolve().parents[2] / "images" / "trainer"
KERAS3_SCRIPT = """\
import argparse
import json

import keras
import numpy as np

import tfjob_onnx

model = keras.Sequential(
    [keras.Input(shape=(4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)]
)
model.compile(optimizer="adam", loss="mse")
rng = np.random.default_rng(3)
x = rng.normal(size=(256, 4)).astype("float32")
model.fit(x, np.stack([x.sum(axis=1), x[:, 0] * 2], axis=1), epochs=3, verbose=2)
parser = argparse.ArgumentParser()
parser.add_argument("--output", required=True)
output = parser.parse_args().output
tfjob_onnx.export(model, output)
with open(output + ".probe.json", "w") as probe:
    json.dump({"inputs": x[:16].tolist(), "outputs": model.predict(x[:16]).tolist()}, probe)
print(f"keras {keras.__version__}: exported the model to {output}", flush=True)
"""


def with_outputs(directory: Path) -> dict:
    """The pod template: the job's outputs volume (a hostPath here; a PVC on a real cluster)."""
    directory.mkdir(exist_ok=True)
    directory.chmod(0o777)  # the image's user writes there (mkdir's mode meets the umask)
    return {
        "spec": {
            **ON_REAL_NODE,
            "volumes": [{"name": "outputs", "hostPath": {"path": str(directory)}}],
            "containers": [
                {
                    "name": "tensorflow",
                    "volumeMounts": [{"name": "outputs", "mountPath": "/outputs"}],
                }
            ],
        }
    }


def assert_onnx_matches_keras(model: Path) -> None:
    probe = json.loads(Path(f"{model}.probe.json").read_text())
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert not isinstance(given.shape[0], int)  # any batch size
    inputs = np.asarray(probe["inputs"], dtype=np.float32)
    (outputs,) = session.run(None, {given.name: inputs})
    expected = np.asarray(probe["outputs"], dtype=np.float32)
    assert outputs.shape == expected.shape
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_a_keras_2_job_exports_onnx_that_onnxruntime_runs_like_keras(
    kubectl, api_client: k8s.ApiClient, namespace: str, trainer_image: str, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "tfjob.dev/v1alpha1",
            "kind": "TensorFlowJob",
            "metadata": {"name": "to-onnx"},
            "spec": {
                "entryScript": "train.py",
                "scriptParams": {"--epochs": 3, "--onnx-output": "/outputs/model.onnx"},
                "template": with_outputs(outputs),
            },
        },
    )
    wait_for_condition(api_client, namespace, "to-onnx", "Succeeded", timeout=240)
    log = kubectl("logs", "-n", namespace, "to-onnx-worker-0").stdout
    assert "exported the model to /outputs/model.onnx" in log, log[-2000:]
    assert_onnx_matches_keras(outputs / "model.onnx")


def test_a_keras_3_model_exports_through_keras_own_onnx_export(
    api_client: k8s.ApiClient, namespace: str, trainer_image: str, tmp_path: Path
) -> None:
    """Keras 3 (which tf2onnx's from_keras cannot convert) goes through model.export."""
    from tfjob_operator.client.sdk import Experiment, TensorFlow

    project = tmp_path / "keras3-proj"
    project.mkdir()
    (project / "export.py").write_text(KERAS3_SCRIPT)
    shutil.copy(TRAINER / "tfjob_onnx.py", project / "tfjob_onnx.py")
    outputs = tmp_path / "outputs"
    run = Experiment("keras3", namespace=namespace, api=api_client).submit(
        TensorFlow(
            source_directory=str(project),
            entry_script="export.py",
            script_params={"--output": "/outputs/keras3.onnx"},
            pod_template=with_outputs(outputs),
        )
    )
    assert run.wait_for_completion(timeout=240) == "Succeeded"
    assert_onnx_matches_keras(outputs / "keras3.onnx")
