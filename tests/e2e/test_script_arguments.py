"""A script's command line reaches it as the user wrote it: named parameters in their order, bare
flags alone, positional arguments after them, through the Python API and through a YAML file
submitted with `kubectl tfjob submit`. The script is argparse's, with a positional argument, a
`store_true` flag and an option whose order matters; it prints what it was given."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE
from tests.support.jobs import get_job

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator")]

SCRIPT = """\
import argparse
import json
import sys

parser = argparse.ArgumentParser()
parser.add_argument("data")
parser.add_argument("--model", required=True)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--no-cuda", action="store_true")
parser.add_argument("--tag", action="append", default=[])
args = parser.parse_args()
print("argv " + json.dumps(sys.argv[1:]), flush=True)
print("parsed " + json.dumps(vars(args), sort_keys=True), flush=True)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "bench-proj"
    directory.mkdir()
    (directory / "bench.py").write_text(SCRIPT)
    return directory


def given(output: str) -> tuple[list[str], dict]:
    argv = re.search(r"^argv (.*)$", output, re.MULTILINE)
    parsed = re.search(r"^parsed (.*)$", output, re.MULTILINE)
    assert argv, output[-2000:]
    assert parsed, output[-2000:]
    return json.loads(argv.group(1)), json.loads(parsed.group(1))


def test_the_sdk_passes_parameters_in_order_bare_flags_alone_then_arguments(
    api_client: k8s.ApiClient, namespace: str, trainer_image: str, project: Path
) -> None:
    from tfjob_operator.client.sdk import Experiment, TensorFlow

    exp = Experiment("arguments", namespace=namespace, api=api_client)
    tf_est = TensorFlow(
        source_directory=str(project),
        entry_script="bench.py",
        # Written in this order, which is not the names' order; '' is argparse's store_true.
        script_params={"--tag": "b", "--model": "MobileNetV2", "--batch-size": 4, "--no-cuda": ""},
        arguments=["--tag", "a", "data/"],
        pod_template={"spec": ON_REAL_NODE},
    )
    run = exp.submit(tf_est)
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=240, out=out) == "Succeeded"
    argv, parsed = given(out.getvalue())
    assert argv == [
        "--tag", "b", "--model", "MobileNetV2", "--batch-size", "4", "--no-cuda",
        "--tag", "a", "data/",
    ]  # fmt: skip
    assert parsed == {
        "batch_size": 4,
        "data": "data/",
        "model": "MobileNetV2",
        "no_cuda": True,
        "tag": ["b", "a"],
    }


def test_a_yaml_job_with_script_params_and_arguments_through_kubectl_tfjob(
    kubectl, cluster, api_client: k8s.ApiClient, namespace: str, trainer_image: str, project: Path
) -> None:
    """The YAML form: scriptParams (a map: the API server sorts it, so flags that need an order
    go in arguments), `''` for a flag alone, then arguments as written."""
    from tfjob_operator.client.plugin import main as kubectl_tfjob

    job = {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": "yaml-arguments"},
        "spec": {
            "entryScript": "bench.py",
            "scriptParams": {"--no-cuda": "", "--model": "ResNet50", "--batch-size": 8},
            "arguments": ["--tag", "z", "--tag", "y", "/data/train"],
            "template": {"spec": ON_REAL_NODE},
        },
    }
    manifest = project.parent / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    out = io.StringIO()
    code = kubectl_tfjob(
        [
            "submit", str(project), "-f", str(manifest), "--wait", "--timeout", "240",
            "-n", namespace, "--kubeconfig", str(cluster.kubeconfig),
        ],
        out=out,
    )  # fmt: skip
    assert code == 0, out.getvalue()
    assert get_job(api_client, namespace, "yaml-arguments")["status"]["state"] == "Succeeded"
    argv, parsed = given(kubectl("logs", "-n", namespace, "yaml-arguments-worker-0").stdout)
    assert argv == [
        "--batch-size", "8", "--model", "ResNet50", "--no-cuda",
        "--tag", "z", "--tag", "y", "/data/train",
    ]  # fmt: skip
    assert parsed["no_cuda"] is True
    assert parsed["tag"] == ["z", "y"]
    assert parsed["data"] == "/data/train"
