"""MPI (Horovod) jobs on the control plane: workers with sshd on a GPU pool, a launcher that
waits for them, the job's own SSH key and hostfile, and success and failure told right."""

from __future__ import annotations

import base64
import contextlib

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from kubernetes import client as k8s

from tests.support.jobs import (
    apply,
    condition,
    get_job,
    job_pods,
    wait_for_condition,
    wait_for_pods,
)
from tfjob_localcluster import control
from tfjob_localcluster.nodepools import NODE_POOL_LABEL

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("operator")]


def horovod_job(name: str, **distribution: object) -> dict:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name},
        "spec": {
            "entryScript": "train_horovod.py",
            "scriptParams": {"--epochs": 2},
            "useGpu": True,
            "distribution": {"backend": "mpi", **distribution},
        },
    }


def env_of(pod: k8s.V1Pod) -> dict[str, str | None]:
    return {e.name: e.value for e in pod.spec.containers[0].env or []}


def test_horovod_job_runs_workers_then_launcher_and_succeeds(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, operator
) -> None:
    apply(kubectl, namespace, horovod_job("hvd", nodeCount=2, processCountPerNode=2))
    names = {"hvd-worker-0", "hvd-worker-1", "hvd-launcher-0"}
    pods = wait_for_pods(core, namespace, "hvd", names)
    domain = f"hvd.{namespace}.svc.cluster.local"

    for index in range(2):
        worker = pods[f"hvd-worker-{index}"]
        assert worker.metadata.labels["tfjob.dev/job-role"] == "worker"
        assert worker.spec.containers[0].resources.limits == {"nvidia.com/gpu": "2"}
        pool = core.read_node(worker.spec.node_name).metadata.labels[NODE_POOL_LABEL]
        assert pool.startswith("gpu-")
        assert "/usr/sbin/sshd -D -e" in " ".join(worker.spec.containers[0].command)
        assert "TF_CONFIG" not in env_of(worker)

    launcher = pods["hvd-launcher-0"]
    assert launcher.metadata.labels["tfjob.dev/job-role"] == "launcher"
    assert launcher.spec.containers[0].command[:3] == ["mpirun", "-np", "4"]
    assert launcher.spec.containers[0].command[-4:] == [
        "python",
        "train_horovod.py",
        "--epochs",
        "2",
    ]
    env = env_of(launcher)
    assert env["OMPI_MCA_orte_default_hostfile"] == "/etc/mpi/hostfile"
    # The launcher starts processes, it does not compute: it sees no GPU (empty values are
    # stored as absent, so the variables are set, to nothing).
    assert env["NVIDIA_VISIBLE_DEVICES"] in ("", None)
    assert env["CUDA_VISIBLE_DEVICES"] in ("", None)
    assert not (
        launcher.spec.containers[0].resources and launcher.spec.containers[0].resources.limits
    )
    pool = core.read_node(launcher.spec.node_name).metadata.labels[NODE_POOL_LABEL]
    assert pool == "cpu"

    hostfile = core.read_namespaced_config_map("hvd-mpi", namespace)
    assert hostfile.data == {
        "hostfile": f"hvd-worker-0.{domain} slots=2\nhvd-worker-1.{domain} slots=2\n"
    }
    secret_name = get_job(api_client, namespace, "hvd")["status"]["sshSecret"]
    assert secret_name.startswith("hvd-ssh-")
    secret = core.read_namespaced_secret(secret_name, namespace)
    assert secret.type == "kubernetes.io/ssh-auth"
    assert secret.immutable is True
    assert secret.metadata.owner_references[0].name == "hvd"
    private = base64.b64decode(secret.data["ssh-privatekey"])
    public = base64.b64decode(secret.data["ssh-publickey"])
    assert load_ssh_private_key(private, password=None) is not None
    assert base64.b64decode(secret.data["authorized_keys"]) == public
    mounts = {v.name: v for v in launcher.spec.volumes}
    assert mounts["tfjob-ssh"].secret.secret_name == secret_name
    # The default Horovod image runs as its uid 1000: the key is that group's to read.
    assert mounts["tfjob-ssh"].secret.default_mode == 0o440
    assert launcher.spec.security_context.fs_group == 1000

    control.end_pod(core, namespace, "hvd-launcher-0", exit_code=0)
    job = wait_for_condition(api_client, namespace, "hvd", "Succeeded")
    assert job["status"]["replicaStatuses"]["Launcher"]["succeeded"] == 1
    for worker in ("hvd-worker-0", "hvd-worker-1"):
        control.wait_for_deletion(core.list_namespaced_pod, worker, namespace=namespace)
    # The key never leaves its Secret: not in the operator's log, events or status.
    key_text = private.decode().splitlines()[1]
    events = core.list_namespaced_event(namespace).items
    assert key_text not in operator.log()
    assert all(key_text not in (e.message or "") for e in events)
    assert key_text not in str(get_job(api_client, namespace, "hvd"))


def test_launcher_waits_until_every_worker_is_ready(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    # 9 GPUs fit no node: worker 1 stays Pending, so the launcher must not start.
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "tfjob.dev/v1alpha1",
            "kind": "TensorFlowJob",
            "metadata": {"name": "stuck"},
            "spec": {
                "mpi": {"slotsPerWorker": 1},
                "tfReplicaSpecs": {
                    "Launcher": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "launcher",
                                        "image": "hvd",
                                        "command": ["mpirun", "hostname"],
                                    }
                                ]
                            }
                        }
                    },
                    "Worker": {
                        "replicas": 2,
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "worker",
                                        "image": "hvd",
                                        "command": ["sshd"],
                                        "resources": {"limits": {"nvidia.com/gpu": 9}},
                                    }
                                ]
                            }
                        },
                    },
                },
            },
        },
    )
    wait_for_pods(core, namespace, "stuck", {"stuck-worker-0", "stuck-worker-1"}, phase="Pending")
    # The operator has seen both workers (the status counts them) and still no launcher.
    kubectl(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.status.replicaStatuses.Worker.active}=2",
        "tfj/stuck",
        "--timeout=30s",
    )
    assert "stuck-launcher-0" not in job_pods(core, namespace, "stuck")
    assert condition(get_job(api_client, namespace, "stuck"), "Running") is None


def test_launcher_failure_fails_the_job_with_its_exit_code(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, horovod_job("crash", nodeCount=1))
    wait_for_pods(core, namespace, "crash", {"crash-worker-0", "crash-launcher-0"})
    control.end_pod(core, namespace, "crash-launcher-0", exit_code=1)
    job = wait_for_condition(api_client, namespace, "crash", "Failed")
    assert (
        "Launcher 0 (pod crash-launcher-0) exited with code 1"
        in condition(job, "Failed")["message"]
    )


def test_an_evicted_worker_restarts_the_job_whatever_order_mpirun_ends_in(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """kubectl drain evicts worker 1 (the Eviction API); mpirun loses a rank and exits 1 at
    once, while the worker is still going. Whichever the operator sees first, the eviction
    decides: the job restarts as attempt 2, launcher included, and with backoffLimit 0 the
    restart spends nothing."""
    job = horovod_job("evict", nodeCount=2)
    job["spec"]["runPolicy"] = {"backoffLimit": 0}
    apply(kubectl, namespace, job)
    names = {"evict-worker-0", "evict-worker-1", "evict-launcher-0"}
    before = wait_for_pods(core, namespace, "evict", names)
    core.create_namespaced_pod_eviction(
        "evict-worker-1",
        namespace,
        k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name="evict-worker-1", namespace=namespace)),
    )
    launcher = before["evict-launcher-0"]
    ended = {"uid": launcher.metadata.uid, "annotations": {control.EXIT_CODE: "1"}}
    with contextlib.suppress(k8s.exceptions.ApiException):  # by uid: attempt 1's launcher
        core.patch_namespaced_pod("evict-launcher-0", namespace, {"metadata": ended})
    after = wait_for_pods(core, namespace, "evict", names, timeout=120)
    assert {p.metadata.labels["tfjob.dev/attempt"] for p in after.values()} == {"2"}
    assert not {p.metadata.uid for p in after.values()} & {p.metadata.uid for p in before.values()}
    job = get_job(api_client, namespace, "evict")
    assert not condition(job, "Failed"), job["status"]
    assert job["status"]["attempt"] == 2
    assert job["status"]["replicaStatuses"]["Worker"]["disruptions"] == 1
