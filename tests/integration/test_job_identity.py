"""A job is known by its uid: deleted and created again under the same name, it runs as a new
job, with none of the old one's counts, and nothing of the old one comes back."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from tests.support.jobs import job_pods, kubeflow_job, replica, wait_for_job
from tfjob_localcluster import control
from tfjob_operator.api.labels import ATTEMPT_LABEL
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("operator")]

ROUNDS = 5


def test_a_job_deleted_and_created_again_in_a_loop_runs_each_time_as_a_new_job(
    core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """Each round the job's worker fails once (137, retried: a restart on its status), then the
    job is deleted and at once created again. Each new job starts from nothing: attempt 1, no
    restarts, its pods owned by its own uid; and no pod of a dead uid is ever made."""
    custom = k8s.CustomObjectsApi(api_client)
    body = kubeflow_job("loop", {"Worker": replica(1, restartPolicy="ExitCode")})
    uids: list[str] = []
    started = time.monotonic()
    for _ in range(ROUNDS):
        uid = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)[
            "metadata"
        ]["uid"]
        uids.append(uid)
        job = wait_for_job(
            api_client,
            namespace,
            "loop",
            lambda job, uid=uid: bool(
                job
                and job["metadata"]["uid"] == uid
                and (job.get("status") or {}).get("state") == "Running"
            ),
            "the new job Running",
        )
        assert job["status"].get("attempt", 1) == 1
        assert not (job["status"].get("replicaStatuses") or {}).get("Worker", {}).get("restarts")
        pods = own_pods(core, namespace, uid, timeout=60)
        assert [p.metadata.labels[ATTEMPT_LABEL] for p in pods] == ["1"]
        control.end_pod(core, namespace, "loop-worker-0", exit_code=137)
        wait_for_job(
            api_client,
            namespace,
            "loop",
            lambda job: bool(
                job
                and ((job.get("status") or {}).get("replicaStatuses") or {})
                .get("Worker", {})
                .get("restarts")
            ),
            "the worker's failure counted",
        )
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "loop")
        for pod in job_pods(core, namespace, "loop").values():
            owner = {ref.uid for ref in pod.metadata.owner_references or []}
            assert owner <= set(uids), owner
    assert len(set(uids)) == ROUNDS
    print(f"\n{ROUNDS} rounds of delete and create again in {time.monotonic() - started:.1f} s")


def own_pods(core: k8s.CoreV1Api, namespace: str, uid: str, timeout: float) -> list[k8s.V1Pod]:
    """The job's running pods once every one of them is owned by ``uid``."""
    deadline = time.monotonic() + timeout
    while True:
        pods = list(job_pods(core, namespace, "loop").values())
        owners = {ref.uid for p in pods for ref in p.metadata.owner_references or []}
        running = [p for p in pods if p.status.phase == "Running"]
        if pods and owners == {uid} and len(running) == len(pods):
            return pods
        assert time.monotonic() < deadline, f"pods of {uid}: {[p.metadata.name for p in pods]}"
        time.sleep(0.2)
