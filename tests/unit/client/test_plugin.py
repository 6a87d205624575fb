"""`kubectl tfjob` without a cluster: the job its options make (--dry-run), and its parsing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from tfjob_operator.client.plugin import _param, main

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("batch-size=50", ("--batch-size", "50")),
        ("--batch-size=50", ("--batch-size", "50")),
        ("--learning-rate=0.01", ("--learning-rate", "0.01")),
        ("--seed=007", ("--seed", "007")),
        ("--data=/data/train.csv", ("--data", "/data/train.csv")),
        ("--verbose", ("--verbose", True)),
        ("no-cuda=", ("--no-cuda", True)),
        ("--shuffle=false", ("--shuffle", "false")),
        ("--layers=[1, 2]", ("--layers", "[1, 2]")),
        ("--expr=a=b", ("--expr", "a=b")),
    ],
)
def test_script_parameters_pass_as_written(text: str, parsed: tuple) -> None:
    assert _param(text) == parsed


def test_parameters_and_arguments_after_the_separator_keep_their_order(tmp_path: Path) -> None:
    out = io.StringIO()
    code = main(
        [
            "submit", str(tmp_path), "--entry-script", "bench.py", "-p", "model=MobileNetV2",
            "-p", "batch-size=4", "-p", "no-cuda", "--dry-run", "--", "data/", "--epochs", "2",
        ],
        out=out,
    )  # fmt: skip
    assert code == 0
    assert yaml.safe_load(out.getvalue())["spec"]["arguments"] == [
        "--model", "MobileNetV2", "--batch-size", "4", "--no-cuda", "data/", "--epochs", "2",
    ]  # fmt: skip


def test_arguments_after_the_separator_are_refused_with_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("kind: TensorFlowJob\n")
    assert main(["submit", "-f", str(job), "--dry-run", "--", "data/"]) == 2
    assert "spec.arguments" in capsys.readouterr().err


def test_submit_dry_run_prints_the_job_its_options_make(tmp_path: Path) -> None:
    project = tmp_path / "my-tf-proj"
    project.mkdir()
    out = io.StringIO()
    code = main(
        [
            "submit", str(project), "--entry-script", "train.py", "-p", "batch-size=50",
            "--backend", "mpi", "--node-count", "2", "--use-gpu", "--compute-target", "gpu-a100",
            "--pip-package", "scikit-learn", "--pip-index-url", "https://pypi.corp/simple",
            "--pip-index-secret", "corp-pypi", "--dry-run",
        ],
        out=out,
    )  # fmt: skip
    assert code == 0
    job = yaml.safe_load(out.getvalue())
    assert job["metadata"] == {"name": "my-tf-proj"}
    assert job["spec"] == {
        "entryScript": "train.py",
        "arguments": ["--batch-size", "50"],
        "useGpu": True,
        "pipPackages": ["scikit-learn"],
        "packageIndex": {"url": "https://pypi.corp/simple", "credentialsSecret": "corp-pypi"},
        "nodePool": "gpu-a100",
        "distribution": {"backend": "mpi", "nodeCount": 2, "processCountPerNode": 1},
    }


def test_submit_refuses_what_the_estimator_cannot_do(capsys: pytest.CaptureFixture) -> None:
    code = main(["submit", "--entry-script", "train.py", "--node-count", "2", "--dry-run"])
    assert code == 2
    assert "node_count > 1 needs a distributed_backend" in capsys.readouterr().err


def test_wait_prints_a_line_per_change_not_per_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job stays Running for three polls, then succeeds: two lines of progress, not four."""
    from tfjob_operator.client import plugin

    states = iter(["Running", "Running", "Running", "Succeeded"])
    clock = iter(range(100))

    class Polled:
        name = "mnist"

        def get_job(self) -> dict:
            return {"status": {"state": next(states), "conditions": []}}

        def pods(self) -> list:
            return []

    monkeypatch.setattr(plugin.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(plugin.time, "monotonic", lambda: float(next(clock)))
    out = io.StringIO()
    assert plugin._wait_for(Polled(), None, out) == 0  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert [line.split("s  ", 1)[1] for line in lines[:-1]] == [
        "Running    pods: 0 created, 0 scheduled, 0 running, 0 done",
        "Succeeded  pods: 0 created, 0 scheduled, 0 running, 0 done",
    ]
    assert lines[-1] == "mnist succeeded"


def test_a_pod_template_file_becomes_the_jobs_template(tmp_path: Path) -> None:
    template = tmp_path / "pods.yaml"
    template.write_text("spec:\n  nodeSelector: {pool: real}\n")
    out = io.StringIO()
    code = main(
        ["submit", str(tmp_path), "--entry-script", "t.py", "--pod-template", str(template),
         "--dry-run"],
        out=out,
    )  # fmt: skip
    assert code == 0
    assert yaml.safe_load(out.getvalue())["spec"]["template"] == {
        "spec": {"nodeSelector": {"pool": "real"}}
    }


def test_a_missing_pod_template_file_is_said_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        ["submit", "--entry-script", "t.py", "--pod-template", str(tmp_path / "no.yaml"),
         "--dry-run"]
    )  # fmt: skip
    assert code == 2
    assert "no.yaml" in capsys.readouterr().err
