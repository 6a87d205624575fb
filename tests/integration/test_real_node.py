"""A real node (kubelet, containerd, runc, CNI bridge, CoreDNS) joins the local cluster and runs
the project's own images as containers."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tfjob_localcluster import control, images, processes
from tfjob_localcluster.nodepools import NodePool
from tfjob_localcluster.realnode import DNS_USER, RealNode, dns_permissions
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from tfjob_operator.sdk import Experiment, TensorFlow

from .jobs import estimator_job
from .own_cluster import own_cluster

pytestmark = pytest.mark.timeout(900)

POOL = NodePool(name="cpu", count=1, cpu="8", memory="32Gi")
OPERATOR_IMAGE = images.IMAGES["operator"].tags[0]


@contextmanager
def cluster_with_real_node(tmp_path: Path, image: str) -> Iterator[tuple[k8s.ApiClient, RealNode]]:
    """A cluster of the test's own with its operator, and a Ready real node holding ``image``
    (built first if need be); the node leaves nothing behind on the machine."""
    images.build_images([next(i.name for i in images.IMAGES.values() if image in i.tags)])
    with own_cluster(tmp_path / "cluster", POOL) as (cluster, api, _operator):
        role, binding = dns_permissions()
        rbac = k8s.RbacAuthorizationV1Api(api)
        rbac.create_cluster_role(role)
        rbac.create_cluster_role_binding(binding)
        node = RealNode(
            name="real-0",
            state_dir=tmp_path / "node",
            kubeconfig=cluster.kubeconfig_for("system:node:real-0", ("system:nodes",)),
            dns_kubeconfig=cluster.kubeconfig_for(DNS_USER),
            labels={"tfjob.dev/node-pool": "real"},
        )
        try:
            node.start()
            control.wait_for_node_ready(k8s.CoreV1Api(api), "real-0", timeout=120)
            node.load_image(image)
            yield api, node
        finally:
            node.stop()


def test_a_real_node_joins_and_runs_the_operator_image_as_a_container(tmp_path: Path) -> None:
    with cluster_with_real_node(tmp_path, OPERATOR_IMAGE) as (api, node):
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "operator-image"},
                "spec": {
                    "nodeSelector": {"tfjob.dev/node-pool": "real"},
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": OPERATOR_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", "id -u; tfjob-operator --help"],
                            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                        }
                    ],
                },
            },
        )
        processes.wait_until(
            lambda: (
                core.read_namespaced_pod("operator-image", "default").status.phase
                in ("Succeeded", "Failed")
            ),
            timeout=120,
            what="the pod's end",
        )
        pod = core.read_namespaced_pod("operator-image", "default")
        (status,) = pod.status.container_statuses
        assert pod.status.phase == "Succeeded", pod.status
        assert status.state.terminated.exit_code == 0
        assert pod.spec.node_name == "real-0"
        log = "".join(path.read_text() for path in (node.state_dir / "pod-logs").rglob("*.log"))
        assert " stdout F 65532\n" in log, log  # the image's non-root USER


TRAINER_IMAGE = images.IMAGES["trainer-cpu"].tags[0]


def test_an_estimator_job_trains_in_a_container_of_the_trainer_image(tmp_path: Path) -> None:
    """The seed document's first example, through the operator: `train.py` with script
    parameters, in the trainer image the project builds, on the real node."""
    with cluster_with_real_node(tmp_path, TRAINER_IMAGE) as (api, node):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            estimator_job(
                "seed-single",
                image=TRAINER_IMAGE,
                scriptParams={"--epochs": 2, "--steps-per-epoch": 5, "--samples": 256},
                template={"spec": {"nodeSelector": {"tfjob.dev/node-pool": "real"}}},
            ),
        )
        processes.wait_until(
            lambda: (
                (
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, "default", PLURAL, "seed-single"
                    ).get("status")
                    or {}
                ).get("state")
                in ("Succeeded", "Failed")
            ),
            timeout=300,
            what="the job's end",
        )
        job = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "seed-single")
        assert job["status"]["state"] == "Succeeded", job["status"]
        (pod,) = core.list_namespaced_pod(
            "default", label_selector="tfjob.dev/job-name=seed-single"
        ).items
        assert pod.spec.node_name == "real-0"
        (container,) = pod.status.container_statuses
        assert container.image.endswith(TRAINER_IMAGE.split("/")[-1])
        log = "".join(path.read_text() for path in (node.state_dir / "pod-logs").rglob("*.log"))
        assert "Epoch 2/2" in log, log[-2000:]


HOROVOD_IMAGE = images.IMAGES["horovod"].tags[0]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Says who each rank is and what it was given, then runs the seed's Horovod example unchanged.
RANK_CHECK = """\
import os, runpy, socket, sys
print(
    f"rank {os.environ['OMPI_COMM_WORLD_RANK']}: uid {os.getuid()} on {socket.gethostname()}"
    f" LEARNING_PLAN={os.environ.get('LEARNING_PLAN')}",
    flush=True,
)
sys.argv[0] = "train_horovod.py"
runpy.run_path("train_horovod.py", run_name="__main__")
"""


def test_horovod_ranks_run_as_the_images_user_over_ssh_with_the_jobs_variables(
    tmp_path: Path,
) -> None:
    """The seed's Horovod example on 2 nodes, as estimator users write it, in the Horovod image
    on the real node: sshd and every rank as uid 1000 (the operator gives the job's key to that
    user), workers found by their DNS names, and a variable set on the job seen by every rank."""
    source = tmp_path / "my-horovod-proj"
    source.mkdir()
    (source / "train_horovod.py").write_text(
        (EXAMPLES / "my-horovod-proj/train_horovod.py").read_text()
    )
    (source / "rank_check.py").write_text(RANK_CHECK)
    with cluster_with_real_node(tmp_path, HOROVOD_IMAGE) as (api, _node):
        exp = Experiment("horovod", namespace="default", api=api)
        estimator = TensorFlow(
            source_directory=str(source),
            script_params={"--epochs": 1},
            entry_script="rank_check.py",
            node_count=2,
            process_count_per_node=1,
            distributed_backend="mpi",
            environment_variables={"LEARNING_PLAN": "two-nodes"},
            pod_template={"spec": {"nodeSelector": {"tfjob.dev/node-pool": "real"}}},
        )
        run = exp.submit(estimator)
        out = io.StringIO()
        state = run.wait_for_completion(show_output=True, timeout=420, out=out)
        shown = out.getvalue()
        assert state == "Succeeded", shown[-3000:]
        who = sorted(re.findall(r"rank (\d): uid (\d+) on (\S+) LEARNING_PLAN=(\S+)", shown))
        assert who == [
            ("0", "1000", f"{run.name}-worker-0", "two-nodes"),
            ("1", "1000", f"{run.name}-worker-1", "two-nodes"),
        ], shown[-3000:]
        checksums = re.findall(
            r"rank \d: loss \S+, average loss \S+, weights checksum (\S+)", shown
        )
        assert len(checksums) == 2, shown[-3000:]
        assert len(set(checksums)) == 1, checksums  # one model: the gradients were all-reduced
        core = k8s.CoreV1Api(api)
        pods = core.list_namespaced_pod("default", label_selector=f"tfjob.dev/job-name={run.name}")
        assert {p.spec.node_name for p in pods.items} == {"real-0"}
        assert {p.spec.security_context.fs_group for p in pods.items} == {1000}
