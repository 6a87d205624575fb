"""Faults of real processes under a running operator, on a control plane of the test's own (the
session's is shared). Each test prints its figures."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tfjob_localcluster import control, processes
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.nodepools import NodePool, NodePools
from tfjob_localcluster.operator_process import OperatorProcess
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

from .jobs import kubeflow_job, replica

pytestmark = [pytest.mark.timeout(300)]

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "tensorflowjobs.tfjob.dev.yaml"
POOL = NodePool(name="cpu", count=3, cpu="64", memory="256Gi")
NAMESPACE = "default"
CREATED = re.compile(r"(\S+)/(\S+): created pod (\S+)")


def states(custom: k8s.CustomObjectsApi) -> dict[str, str | None]:
    jobs = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    return {job["metadata"]["name"]: (job.get("status") or {}).get("state") for job in jobs}


def wait_for_states(
    custom: k8s.CustomObjectsApi, wanted: dict[str, str], timeout: float, what: str
) -> None:
    def reached() -> bool:
        try:
            current = states(custom)
        except (ApiException, OSError):
            return False  # the API server is not back yet
        return all(current.get(job) == state for job, state in wanted.items())

    processes.wait_until(reached, timeout=timeout, what=what, interval=0.2)


def test_the_operator_rides_out_a_crash_of_the_api_server_and_etcd(tmp_path: Path) -> None:
    """kube-apiserver and etcd SIGKILLed while 6 jobs run, down 10 s, then started again: the
    same operator process reconnects by itself, every job ends as its pods say, a job created
    after the outage runs, and no pod was created twice."""
    cluster = LocalCluster(state_dir=tmp_path / "cluster", node_pools=NodePools(pools=[POOL]))
    cluster.start()
    try:
        with cluster.api_client() as api:
            cluster.install_crd(yaml.safe_load(CRD_FILE.read_text()))
            core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
            operator = OperatorProcess(kubeconfig=cluster.kubeconfig, log_dir=cluster.log_dir)
            operator.start()
            try:
                names = [f"job-{i}" for i in range(6)]
                for name in names:
                    custom.create_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        NAMESPACE,
                        PLURAL,
                        kubeflow_job(name, {"Worker": replica(2, restartPolicy="Never")}),
                    )
                wait_for_states(custom, dict.fromkeys(names, "Running"), 60, "6 jobs Running")
                pid = operator.process.pid if operator.process else None

                cluster.kill_api()
                down = time.monotonic()
                time.sleep(10)
                cluster.start_api()
                outage = time.monotonic() - down

                # The same operator, never restarted, acts on what happens next.
                back = time.monotonic()
                ends = {name: (0 if i % 3 else 1) for i, name in enumerate(names)}
                for name, code in ends.items():
                    control.end_pod(core, NAMESPACE, f"{name}-worker-0", exit_code=code)
                custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    PLURAL,
                    kubeflow_job("after", {"Worker": replica(2, restartPolicy="Never")}),
                )
                wanted = {n: "Failed" if code else "Succeeded" for n, code in ends.items()}
                wait_for_states(custom, wanted | {"after": "Running"}, 120, "every job's end")
                settled = time.monotonic() - back
                assert operator.process is not None
                assert operator.process.alive()
                assert operator.process.pid == pid

                log = operator.log()
                created = Counter(match.group(3) for match in CREATED.finditer(log))
                twice = {pod: n for pod, n in created.items() if n > 1}
                assert twice == {}, twice
                assert len(created) == 2 * len(names) + 2
                print(
                    f"\nfault: API server and etcd down {outage:.1f} s (SIGKILL); all 6 jobs "
                    f"ended right {settled:.1f} s after they came back; operator pid {pid} "
                    f"never restarted; {len(created)} pods created, 0 twice"
                )
            finally:
                operator.stop()
    finally:
        cluster.stop()
