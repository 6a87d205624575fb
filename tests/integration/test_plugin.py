"""`kubectl tfjob` on the real control plane, found by kubectl itself on PATH: submit a
directory and wait with progress, exit non-zero with the reason when the job fails, show its
metrics. (Kwok pods are ended by annotation; logs of real pods are in tests/e2e.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tfjob_localcluster import binaries, control

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def user_env(cluster) -> dict[str, str]:
    """A user's environment: kubectl finds kubectl-tfjob on PATH, the cluster by KUBECONFIG."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }


def kubectl_tfjob(cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl tfjob ARGS -n NAMESPACE`, to its end."""
    return subprocess.run(
        [binaries.kubectl(), "tfjob", *args, "-n", namespace],
        capture_output=True,
        text=True,
        env=user_env(cluster),
        timeout=90,
        check=False,
    )


def end_when_running(core: k8s.CoreV1Api, namespace: str, pod: str, **how: object) -> None:
    def end() -> None:
        control.wait_for_pod_phase(core, namespace, pod, "Running", timeout=60)
        control.end_pod(core, namespace, pod, **how)  # type: ignore[arg-type]

    threading.Thread(target=end, daemon=True).start()


def test_submit_a_directory_and_wait_with_progress_then_read_its_metrics(
    cluster, core: k8s.CoreV1Api, namespace: str, project: Path
) -> None:
    command = [
        binaries.kubectl(), "tfjob", "submit", str(project), "--entry-script", "train.py",
        "-p", "epochs=2", "--backend", "multiWorkerMirrored", "--node-count", "2", "--wait",
        "-n", namespace,
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=user_env(cluster)
    ) as waiting:
        assert waiting.stdout is not None
        lines = []
        for line in waiting.stdout:
            lines.append(line.rstrip("\n"))
            if "Running" in line and "2 running" in line:
                # Its progress shows both workers running: end worker 0, as training would.
                control.end_pod(
                    core,
                    namespace,
                    "my-tf-proj-worker-0",
                    exit_code=0,
                    message='{"tfjob.dev/metrics": {"loss": 0.125}}',
                )
        assert waiting.wait(timeout=60) == 0
    assert lines[0] == "tensorflowjob.tfjob.dev/my-tf-proj created"
    assert lines[-1] == "my-tf-proj succeeded; metrics {'loss': 0.125}", lines
    shown = kubectl_tfjob(cluster, namespace, "metrics", "my-tf-proj")
    assert shown.returncode == 0
    assert shown.stdout.split() == ["loss", "0.125"]


def test_wait_exits_non_zero_with_the_reason_when_the_job_fails(
    cluster, core: k8s.CoreV1Api, namespace: str, project: Path
) -> None:
    submitted = kubectl_tfjob(
        cluster, namespace, "submit", str(project), "--entry-script", "train.py",
        "--name", "doomed",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    end_when_running(core, namespace, "doomed-worker-0", exit_code=2)
    waited = kubectl_tfjob(cluster, namespace, "wait", "doomed", "--timeout", "60")
    assert waited.returncode == 1
    assert waited.stdout.splitlines()[-1].startswith(
        "doomed failed (TFJobFailed): TFJob " + namespace + "/doomed has failed: Worker 0 (pod "
        "doomed-worker-0) exited with code 2"
    )
