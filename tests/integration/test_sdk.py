"""The Python API against the real control plane (kwok pods ended by annotation): submit ships
the source and creates the job; the run reports its state, waits for its end, raises with the
job's reason when it fails, and cancel deletes it."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support.jobs import wait_for_job, wait_for_pods
from tfjob_localcluster import control
from tfjob_operator.client.sdk import Experiment, Run, RunFailed, TensorFlow

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def end_when_running(
    core: k8s.CoreV1Api, run: Run, pod: str, exit_code: int, message: str | None = None
) -> threading.Thread:
    """End ``pod`` with ``exit_code`` (and a termination message) once it runs, while the test
    waits on the run."""

    def end() -> None:
        control.wait_for_pod_phase(core, run.namespace, pod, "Running", timeout=60)
        control.end_pod(core, run.namespace, pod, exit_code=exit_code, message=message)

    thread = threading.Thread(target=end, daemon=True)
    thread.start()
    return thread


def test_a_run_is_submitted_with_its_source_and_waited_for(
    api_client: k8s.ApiClient, core: k8s.CoreV1Api, namespace: str, project: Path
) -> None:
    exp = Experiment("keras-exp", namespace=namespace, api=api_client)
    tf_est = TensorFlow(
        source_directory=project,
        entry_script="train.py",
        script_params={"--epochs": 2},
        distributed_backend="multiWorkerMirrored",
        node_count=2,
    )
    run = exp.submit(tf_est)
    assert run.name.startswith("keras-exp-")
    assert run.get_job()["spec"]["source"] == {"directory": {"configMap": f"{run.name}-source"}}
    # What tfjob_metrics writes, as the pod's termination message.
    reported = '{"tfjob.dev/metrics": {"loss": 0.25, "accuracy": 0.875}}'
    ender = end_when_running(core, run, f"{run.name}-worker-0", 0, reported)
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=60, out=out) == "Succeeded"
    ender.join(timeout=30)
    assert run.get_status() == "Succeeded"
    assert f"[{run.name}] Succeeded" in out.getvalue()
    assert run.get_metrics() == {"accuracy": 0.875, "loss": 0.25}


def test_a_failed_run_raises_with_the_jobs_reason(
    api_client: k8s.ApiClient, core: k8s.CoreV1Api, namespace: str, project: Path
) -> None:
    run = Experiment("broken", namespace=namespace, api=api_client).submit(
        TensorFlow(source_directory=project, entry_script="train.py"), name="broken-run"
    )
    end_when_running(core, run, "broken-run-worker-0", 1)
    with pytest.raises(RunFailed) as failed:
        run.wait_for_completion(timeout=60)
    assert failed.value.reason == "TFJobFailed"
    assert "Worker 0 (pod broken-run-worker-0) exited with code 1" in failed.value.message


def test_cancel_deletes_the_run(
    api_client: k8s.ApiClient, core: k8s.CoreV1Api, namespace: str
) -> None:
    run = Experiment("short", namespace=namespace, api=api_client).submit(
        TensorFlow(entry_script="train.py"), name="short-run"
    )
    wait_for_pods(core, namespace, "short-run", {"short-run-worker-0"})
    run.cancel()
    wait_for_job(api_client, namespace, "short-run", lambda job: job is None, "deleted", 30)
