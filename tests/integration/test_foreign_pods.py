"""The operator's own load is bounded by what it owns: a tenant who labels two thousand pods of
their own with a job's name (the label anyone can write) costs the operator a check per pod, not
a place in its cache, and the job beside them runs as before. Its RSS and CPU are reported."""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.support.install import session_operator_stopped
from tests.support.jobs import apply, kubeflow_job, replica, wait_for_condition
from tests.support.metrics import scrape
from tfjob_localcluster import processes
from tfjob_localcluster.operator_process import OperatorProcess

pytestmark = pytest.mark.timeout(600)

FOREIGN = 2000
CACHED_PODS = ("tfjob_operator_cached_objects", (("resource", "pods"),))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def foreign_pod(name: str, job: str) -> dict[str, Any]:
    """A tenant's pod that says it is the job's: its label, no owner. It stays Pending (no node
    matches), so each costs the watch an event or two."""
    return {
        "metadata": {"name": name, "labels": {"tfjob.dev/job-name": job}},
        "spec": {
            "nodeSelector": {"tfjob.dev/nowhere": "true"},
            "containers": [{"name": "c", "image": "busybox:1"}],
        },
    }


def test_two_thousand_labelled_foreign_pods_stay_out_of_the_operators_cache(
    cluster, crd, operator, kubectl, core: k8s.CoreV1Api, api_client, namespace, tmp_path
) -> None:
    other = f"{namespace}-t"
    core.create_namespace({"metadata": {"name": other, "labels": {"tfjob.dev/test": "true"}}})
    port = processes.free_port()
    metered = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_dir=tmp_path,
        extra_args=[f"--metrics-port={port}", "--metrics-address=127.0.0.1"],
        env=operator.env,
    )
    try:
        with session_operator_stopped(operator):
            process = metered.start()
            apply(kubectl, namespace, kubeflow_job("victim", {"Worker": replica(2)}))
            wait_for_condition(api_client, namespace, "victim", "Running", timeout=60)
            before_rss, before_cpu = rss_mb(process.pid), cpu_seconds(process.pid)
            assert scrape(port)[CACHED_PODS] == 2

            # Half beside the job under its name, half in another namespace of the tenant's.
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                made = list(
                    pool.map(
                        lambda i: core.create_namespaced_pod(
                            (namespace, other)[i % 2], foreign_pod(f"foreign-{i}", "victim")
                        ),
                        range(FOREIGN),
                    )
                )
            assert len(made) == FOREIGN
            # A job made after them: once it runs, the pod watch has brought every one of them.
            apply(kubectl, namespace, kubeflow_job("after", {"Worker": replica(2)}))
            wait_for_condition(api_client, namespace, "after", "Running", timeout=120)
            after_rss, after_cpu = rss_mb(process.pid), cpu_seconds(process.pid)
            print(
                f"\n{FOREIGN} foreign pods labelled with a job's name: operator RSS "
                f"{before_rss:.1f} -> {after_rss:.1f} MB, CPU {after_cpu - before_cpu:.2f} s "
                "while they were made and watched"
            )
            assert scrape(port)[CACHED_PODS] == 4  # the two jobs' own pods, nothing else
            assert after_rss - before_rss < 25, (before_rss, after_rss)
            job = wait_for_condition(api_client, namespace, "victim", "Running", timeout=5)
            assert not job["status"].get("waiting"), job["status"]
    finally:
        metered.stop()
        core.delete_namespace(other)
