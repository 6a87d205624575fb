"""What an installation watches: the operator's Prometheus metrics and its JSON log lines, from a
real operator process running a real job."""

from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s

from tests.support.install import session_operator_stopped, wait_for_log
from tests.support.jobs import apply, estimator_job, wait_for_condition, wait_for_pods
from tests.support.metrics import scrape
from tfjob_localcluster import control, processes
from tfjob_localcluster.operator_process import OperatorProcess

pytestmark = pytest.mark.timeout(120)


def wait_for_gauge(port: int, state: str, value: float) -> None:
    processes.wait_until(
        lambda: scrape(port).get(("tfjob_operator_jobs", (("state", state),))) == value,
        timeout=30,
        what=f"tfjob_operator_jobs{{state={state!r}}} == {value}",
        interval=0.2,
    )


def test_metrics_and_json_logs_of_a_job_run(
    cluster, crd, operator, kubectl, core: k8s.CoreV1Api, api_client, namespace, tmp_path
) -> None:
    port = processes.free_port()
    metered = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_dir=tmp_path,
        extra_args=[
            "-n",
            namespace,
            "--log-format=json",
            f"--metrics-port={port}",
            "--metrics-address=127.0.0.1",
        ],
    )
    # A Service the job will want, made by someone else, without the job's label (so the
    # operator's watch cannot show it): the operator's create answers 409.
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "metered"},
            "spec": {"clusterIP": "None", "ports": [{"port": 2222}]},
        },
    )
    with session_operator_stopped(operator):
        metered.start()
        try:
            before = scrape(port)
            assert before[("tfjob_operator_jobs", (("state", "Running"),))] == 0
            apply(
                kubectl,
                namespace,
                estimator_job(
                    "metered", distribution={"backend": "multiWorkerMirrored", "workerCount": 2}
                ),
            )
            wait_for_pods(core, namespace, "metered", {"metered-worker-0", "metered-worker-1"})
            wait_for_condition(api_client, namespace, "metered", "Running")
            # The gauge follows once the pass that wrote the status has returned.
            wait_for_gauge(port, "Running", 1)
            control.end_pod(core, namespace, "metered-worker-0", exit_code=0)
            wait_for_condition(api_client, namespace, "metered", "Succeeded")
            wait_for_log(metered, "metered: Succeeded")
            wait_for_gauge(port, "Succeeded", 1)
            after = scrape(port)
        finally:
            metered.stop()

    assert after[("tfjob_operator_jobs", (("state", "Succeeded"),))] == 1
    assert after[("tfjob_operator_jobs", (("state", "Running"),))] == 0
    assert after[("tfjob_operator_pods_created_total", (("replica_type", "worker"),))] == 2
    passes = after[("tfjob_operator_reconcile_duration_seconds_count", (("result", "success"),))]
    assert passes >= 3
    conflict = (("code", "409"), ("resource", "services"), ("verb", "create"))
    assert after[("tfjob_operator_api_errors_total", conflict)] >= 1  # once per pass, in fact

    lines = [line for line in metered.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"message", "severity", "timestamp"} <= set(r) for r in records)
    messages = [r["message"] for r in records]
    assert f"{namespace}/metered: created pod metered-worker-0" in messages
    assert f"{namespace}/metered: Succeeded" in messages
