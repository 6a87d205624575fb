"""The pods and the headless Service a job should have, built from its replica specs."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from pydantic import ValidationError

from tfjob_operator.api.v1alpha1 import ReplicaSpec, ReplicaSpecs, ReplicaType, RestartPolicy
from tfjob_operator.core.builders import (
    JobRef,
    build_pod,
    build_service,
    desired_children,
    pod_restart_policy,
    requests_gpus,
    spec_hash,
)
from tfjob_operator.core.topology import chief_type
from tfjob_operator.settings import OperatorSettings

pytestmark = pytest.mark.timeout(10)

JOB = JobRef(name="mnist", namespace="ml", uid="0b6f3c1e-uid")
SETTINGS = OperatorSettings()
HASH = "tfjob.dev/spec-hash"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OWNER = {
    "apiVersion": "tfjob.dev/v1alpha1",
    "kind": "TensorFlowJob",
    "name": "mnist",
    "uid": "0b6f3c1e-uid",
    "controller": True,
    "blockOwnerDeletion": True,
}
TFJOB_PORT = {"name": "tfjob-port", "containerPort": 2222, "protocol": "TCP"}


def trainer(**fields: Any) -> dict[str, Any]:
    return {"name": "tensorflow", "image": "tf:2.21", "command": ["python", "train.py"], **fields}


def replica(
    replicas: int = 1,
    *,
    restart_policy: str | None = None,
    containers: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    **pod_spec: Any,
) -> dict[str, Any]:
    template: dict[str, Any] = {"spec": {"containers": containers or [trainer()], **pod_spec}}
    if metadata is not None:
        template["metadata"] = metadata
    spec: dict[str, Any] = {"replicas": replicas, "template": template}
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    return spec


def specs(**by_type: dict[str, Any]) -> ReplicaSpecs:
    return ReplicaSpecs.model_validate(by_type)


def children(
    replica_specs: ReplicaSpecs,
    *,
    node_pool: str | None = None,
    settings: OperatorSettings = SETTINGS,
) -> dict[str, dict[str, Any]]:
    return desired_children(JOB, replica_specs, node_pool=node_pool, settings=settings).pods


def without_hash(pod: dict[str, Any]) -> tuple[dict[str, Any], str]:
    pod = copy.deepcopy(pod)
    return pod, pod["metadata"]["annotations"].pop(HASH)


def env_of(pod: dict[str, Any], container: int = 0) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][container].get("env", [])}


def tf_config_of(pod: dict[str, Any]) -> dict[str, Any]:
    return json.loads(env_of(pod)["TF_CONFIG"])


# ----- golden: a chief, two GPU workers and a parameter server ------------------------------

PS_JOB = specs(
    Chief=replica(1),
    Worker=replica(
        2,
        restart_policy="OnFailure",
        containers=[trainer(resources={"limits": {"nvidia.com/gpu": 1}})],
        metadata={"labels": {"team": "vision"}, "annotations": {"example.com/owner": "alice"}},
    ),
    PS=replica(1, restart_policy="Always"),
)

PS_JOB_CLUSTER = (
    '{"chief":["mnist-chief-0.mnist.ml.svc.cluster.local:2222"],'
    '"ps":["mnist-ps-0.mnist.ml.svc.cluster.local:2222"],'
    '"worker":["mnist-worker-0.mnist.ml.svc.cluster.local:2222",'
    '"mnist-worker-1.mnist.ml.svc.cluster.local:2222"]}'
)


def test_chief_ps_job_has_one_pod_per_replica() -> None:
    pods = children(PS_JOB, node_pool="gpu-a100")
    assert sorted(pods) == ["mnist-chief-0", "mnist-ps-0", "mnist-worker-0", "mnist-worker-1"]
    assert all(name == pod["metadata"]["name"] for name, pod in pods.items())


def test_golden_worker_pod_of_chief_ps_job() -> None:
    pod, digest = without_hash(children(PS_JOB, node_pool="gpu-a100")["mnist-worker-1"])
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "mnist-worker-1",
            "namespace": "ml",
            "labels": {
                "team": "vision",
                "tfjob.dev/job-name": "mnist",
                "tfjob.dev/replica-type": "worker",
                "tfjob.dev/replica-index": "1",
            },
            "annotations": {"example.com/owner": "alice"},
            "ownerReferences": [OWNER],
        },
        "spec": {
            "containers": [
                {
                    "name": "tensorflow",
                    "image": "tf:2.21",
                    "command": ["python", "train.py"],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    "ports": [{"name": "tfjob-port", "containerPort": 2222, "protocol": "TCP"}],
                    "env": [
                        {
                            "name": "TF_CONFIG",
                            "value": '{"cluster":'
                            + PS_JOB_CLUSTER
                            + ',"task":{"type":"worker","index":1},"environment":"cloud"}',
                        }
                    ],
                }
            ],
            "hostname": "mnist-worker-1",
            "subdomain": "mnist",
            "restartPolicy": "OnFailure",
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "nodeSelector": {"tfjob.dev/node-pool": "gpu-a100"},
        },
    }
    assert len(digest) == 16
    assert set(digest) <= set("0123456789abcdef")


def test_golden_chief_pod_of_chief_ps_job() -> None:
    pod, _ = without_hash(children(PS_JOB, node_pool="gpu-a100")["mnist-chief-0"])
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "mnist-chief-0",
            "namespace": "ml",
            "labels": {
                "tfjob.dev/job-name": "mnist",
                "tfjob.dev/replica-type": "chief",
                "tfjob.dev/replica-index": "0",
                "tfjob.dev/job-role": "chief",
            },
            "annotations": {},
            "ownerReferences": [OWNER],
        },
        "spec": {
            "containers": [
                {
                    "name": "tensorflow",
                    "image": "tf:2.21",
                    "command": ["python", "train.py"],
                    "ports": [{"name": "tfjob-port", "containerPort": 2222, "protocol": "TCP"}],
                    "env": [
                        {
                            "name": "TF_CONFIG",
                            "value": '{"cluster":'
                            + PS_JOB_CLUSTER
                            + ',"task":{"type":"chief","index":0},"environment":"cloud"}',
                        }
                    ],
                }
            ],
            "hostname": "mnist-chief-0",
            "subdomain": "mnist",
            "restartPolicy": "Never",
        },
    }


def test_every_pod_of_chief_ps_job_knows_its_own_task() -> None:
    pods = children(PS_JOB)
    tasks = {name: tf_config_of(pod)["task"] for name, pod in pods.items()}
    assert tasks == {
        "mnist-chief-0": {"type": "chief", "index": 0},
        "mnist-worker-0": {"type": "worker", "index": 0},
        "mnist-worker-1": {"type": "worker", "index": 1},
        "mnist-ps-0": {"type": "ps", "index": 0},
    }
    clusters = {json.dumps(tf_config_of(pod)["cluster"]) for pod in pods.values()}
    assert len(clusters) == 1  # every training task sees the same cluster


def test_ps_pod_has_its_own_restart_policy_and_no_gpu_placement() -> None:
    pod = children(PS_JOB, node_pool="gpu-a100")["mnist-ps-0"]
    assert pod["spec"]["restartPolicy"] == "Always"
    assert "tolerations" not in pod["spec"]
    assert "nodeSelector" not in pod["spec"]
    assert "tfjob.dev/job-role" not in pod["metadata"]["labels"]


def test_golden_headless_service() -> None:
    assert build_service(JOB) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "mnist",
            "namespace": "ml",
            "labels": {"tfjob.dev/job-name": "mnist"},
            "ownerReferences": [OWNER],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"tfjob.dev/job-name": "mnist"},
            "ports": [{"name": "tfjob-port", "port": 2222, "targetPort": "tfjob-port"}],
        },
    }


def test_desired_children_carries_the_service() -> None:
    desired = desired_children(JOB, PS_JOB, node_pool=None, settings=SETTINGS)
    assert desired.service == build_service(JOB)


def test_owner_reference_makes_the_job_the_controller() -> None:
    assert JOB.owner_reference() == OWNER


def test_service_selects_every_pod_of_the_job() -> None:
    selector = build_service(JOB)["spec"]["selector"]
    for pod in children(PS_JOB).values():
        assert selector.items() <= pod["metadata"]["labels"].items()


def test_building_twice_gives_identical_children() -> None:
    first = desired_children(JOB, PS_JOB, node_pool="gpu-a100", settings=SETTINGS)
    second = desired_children(JOB, PS_JOB, node_pool="gpu-a100", settings=SETTINGS)
    assert first == second


# ----- chief_type and the chief label -------------------------------------------------------


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"Chief": replica(1), "Worker": replica(2), "PS": replica(1)}, ReplicaType.CHIEF),
        ({"Master": replica(1), "Worker": replica(2)}, ReplicaType.MASTER),
        ({"Worker": replica(3)}, ReplicaType.WORKER),
        ({"Worker": replica(2), "Evaluator": replica(1)}, ReplicaType.WORKER),
        ({"Chief": replica(0), "Worker": replica(2)}, ReplicaType.WORKER),
        ({"Evaluator": replica(1)}, None),
    ],
    ids=["chief", "master", "workers-only", "worker-and-evaluator", "zero-chief", "no-deciders"],
)
def test_chief_type(present: dict[str, Any], expected: ReplicaType | None) -> None:
    assert chief_type(specs(**present)) is expected


def test_without_chief_worker_0_carries_the_chief_role() -> None:
    pods = children(specs(Worker=replica(3)))
    roles = {n: p["metadata"]["labels"].get("tfjob.dev/job-role") for n, p in pods.items()}
    assert roles == {"mnist-worker-0": "chief", "mnist-worker-1": None, "mnist-worker-2": None}


def test_master_pod_carries_the_chief_role() -> None:
    pods = children(specs(Master=replica(1), Worker=replica(1)))
    assert pods["mnist-master-0"]["metadata"]["labels"]["tfjob.dev/job-role"] == "chief"
    assert "tfjob.dev/job-role" not in pods["mnist-worker-0"]["metadata"]["labels"]


# ----- labels ---------------------------------------------------------------------------------


def test_template_labels_and_annotations_are_kept_but_operator_labels_win() -> None:
    metadata = {
        "labels": {
            "app": "mnist",
            "tfjob.dev/job-name": "impostor",
            "tfjob.dev/replica-index": "9",
        },
        "annotations": {"prometheus.io/scrape": "true"},
    }
    pod = children(specs(Worker=replica(1, metadata=metadata)))["mnist-worker-0"]
    assert pod["metadata"]["labels"] == {
        "app": "mnist",
        "tfjob.dev/job-name": "mnist",
        "tfjob.dev/replica-type": "worker",
        "tfjob.dev/replica-index": "0",
        "tfjob.dev/job-role": "chief",
    }
    annotations = dict(pod["metadata"]["annotations"])
    annotations.pop(HASH)
    assert annotations == {"prometheus.io/scrape": "true"}


def test_hostname_and_subdomain_give_each_pod_its_dns_name() -> None:
    pod = children(specs(Worker=replica(2, hostname="mine", subdomain="elsewhere")))[
        "mnist-worker-1"
    ]
    assert pod["spec"]["hostname"] == "mnist-worker-1"
    assert pod["spec"]["subdomain"] == "mnist"


def test_other_pod_spec_fields_pass_through() -> None:
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}}]
    pod = children(specs(Worker=replica(1, volumes=volumes, serviceAccountName="trainer")))[
        "mnist-worker-0"
    ]
    assert pod["spec"]["volumes"] == volumes
    assert pod["spec"]["serviceAccountName"] == "trainer"


# ----- restart policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "pod_policy"),
    [
        (RestartPolicy.ALWAYS, "Always"),
        (RestartPolicy.ON_FAILURE, "OnFailure"),
        (RestartPolicy.NEVER, "Never"),
        (RestartPolicy.EXIT_CODE, "Never"),
    ],
)
def test_pod_restart_policy(policy: RestartPolicy, pod_policy: str) -> None:
    assert pod_restart_policy(policy) == pod_policy


@pytest.mark.parametrize(
    ("policy", "pod_policy"),
    [("Always", "Always"), ("OnFailure", "OnFailure"), ("Never", "Never"), ("ExitCode", "Never")],
)
def test_replica_restart_policy_overrides_the_templates(policy: str, pod_policy: str) -> None:
    spec = replica(2, restart_policy=policy, restartPolicy="Always")
    pods = children(specs(Worker=spec))
    assert {p["spec"]["restartPolicy"] for p in pods.values()} == {pod_policy}


def test_default_restart_policy_is_never() -> None:
    pod = children(specs(Worker=replica(1)))["mnist-worker-0"]
    assert pod["spec"]["restartPolicy"] == "Never"


# ----- GPUs: detection, toleration, node pool -------------------------------------------------


@pytest.mark.parametrize(
    ("pod_spec", "wants"),
    [
        ({"containers": [{"name": "tensorflow"}]}, False),
        ({"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}, True),
        ({"containers": [{"name": "t", "resources": {"requests": {"nvidia.com/gpu": 1}}}]}, True),
        ({"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "0"}}}]}, False),
        ({"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": 0}}}]}, False),
        ({"containers": [{"name": "t", "resources": {"limits": {"cpu": "4"}}}]}, False),
        ({"containers": [{"name": "t", "resources": None}]}, False),
        (
            {
                "containers": [{"name": "t"}],
                "initContainers": [
                    {"name": "warmup", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
                ],
            },
            True,
        ),
        (
            {
                "containers": [
                    {"name": "tensorflow"},
                    {"name": "sidecar", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                ]
            },
            True,
        ),
    ],
    ids=[
        "none",
        "limit",
        "request",
        "zero-string",
        "zero-int",
        "cpu-only",
        "null-resources",
        "init-container",
        "sidecar",
    ],
)
def test_requests_gpus(pod_spec: dict[str, Any], wants: bool) -> None:
    assert requests_gpus(pod_spec) is wants


GPU_WORKER = [trainer(resources={"limits": {"nvidia.com/gpu": "4"}})]


def test_gpu_pod_without_pool_gets_the_toleration_and_no_node_selector() -> None:
    pod = children(specs(Worker=replica(1, containers=GPU_WORKER)))["mnist-worker-0"]
    assert pod["spec"]["tolerations"] == [GPU_TOLERATION]
    assert "nodeSelector" not in pod["spec"]


def test_gpu_pod_goes_to_the_operators_default_gpu_pool() -> None:
    settings = OperatorSettings(default_gpu_node_pool="gpu-t4")
    pod = children(specs(Worker=replica(1, containers=GPU_WORKER)), settings=settings)[
        "mnist-worker-0"
    ]
    assert pod["spec"]["nodeSelector"] == {"tfjob.dev/node-pool": "gpu-t4"}


def test_the_jobs_node_pool_wins_over_the_default() -> None:
    settings = OperatorSettings(default_gpu_node_pool="gpu-t4")
    pods = children(
        specs(Worker=replica(1, containers=GPU_WORKER)), node_pool="gpu-a100", settings=settings
    )
    assert pods["mnist-worker-0"]["spec"]["nodeSelector"] == {"tfjob.dev/node-pool": "gpu-a100"}


def test_node_pool_label_and_toleration_come_from_settings() -> None:
    settings = OperatorSettings(
        node_pool_label="cloud.google.com/gke-nodepool",
        gpu_toleration={"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"},
    )
    pods = children(
        specs(Worker=replica(1, containers=GPU_WORKER)), node_pool="a100-pool", settings=settings
    )
    spec = pods["mnist-worker-0"]["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "a100-pool"}
    assert spec["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"}
    ]


def test_user_gpu_toleration_is_not_duplicated_and_other_tolerations_are_kept() -> None:
    own = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    spot = {"key": "spot", "operator": "Exists"}
    pod = children(specs(Worker=replica(1, containers=GPU_WORKER, tolerations=[spot, own])))[
        "mnist-worker-0"
    ]
    assert pod["spec"]["tolerations"] == [spot, own]


def test_user_tolerations_get_the_gpu_toleration_appended() -> None:
    spot = {"key": "spot", "operator": "Exists"}
    pod = children(specs(Worker=replica(1, containers=GPU_WORKER, tolerations=[spot])))[
        "mnist-worker-0"
    ]
    assert pod["spec"]["tolerations"] == [spot, GPU_TOLERATION]


def test_user_node_selector_is_kept_next_to_the_pool() -> None:
    pod = children(
        specs(Worker=replica(1, containers=GPU_WORKER, nodeSelector={"disk": "ssd"})),
        node_pool="gpu-a100",
    )["mnist-worker-0"]
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd", "tfjob.dev/node-pool": "gpu-a100"}


def test_cpu_pods_are_not_sent_to_the_gpu_pool() -> None:
    settings = OperatorSettings(default_gpu_node_pool="gpu-t4")
    pods = children(
        specs(Chief=replica(1), Worker=replica(1, containers=GPU_WORKER)),
        node_pool="gpu-a100",
        settings=settings,
    )
    chief = pods["mnist-chief-0"]["spec"]
    assert "tolerations" not in chief
    assert "nodeSelector" not in chief
    assert pods["mnist-worker-0"]["spec"]["nodeSelector"] == {"tfjob.dev/node-pool": "gpu-a100"}


def test_gpu_in_an_init_container_places_the_pod_too() -> None:
    init = [{"name": "warmup", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
    pod = children(specs(Worker=replica(1, initContainers=init)), node_pool="gpu-t4")[
        "mnist-worker-0"
    ]
    assert pod["spec"]["tolerations"] == [GPU_TOLERATION]
    assert pod["spec"]["nodeSelector"] == {"tfjob.dev/node-pool": "gpu-t4"}


# ----- TF_CONFIG ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable",
    [
        {"name": "TF_CONFIG", "value": '{"cluster":{}}'},
        {"name": "TF_CONFIG", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
    ],
    ids=["value", "from-a-config-map"],
)
def test_a_template_that_sets_tf_config_is_refused_naming_the_field(variable: dict) -> None:
    """It was replaced silently; each pod's TF_CONFIG is the operator's (the CRD refuses it at
    apply: tests/integration/test_invalid_manifests.py)."""
    container = trainer(env=[{"name": "DATA", "value": "/data"}, variable])
    with pytest.raises(ValidationError) as refused:
        specs(Worker=replica(2, containers=[container]))
    (error,) = refused.value.errors()
    assert error["loc"] == ("Worker", "template", "spec", "containers", 0, "env", 1, "name")
    assert "TF_CONFIG is the operator's" in error["msg"]


def test_tf_config_goes_to_the_tensorflow_container_not_the_sidecar() -> None:
    containers = [{"name": "log-shipper", "image": "fluent-bit"}, trainer()]
    pod = children(specs(Worker=replica(2, containers=containers)))["mnist-worker-0"]
    sidecar, tensorflow = pod["spec"]["containers"]
    assert "env" not in sidecar
    assert "ports" not in sidecar
    assert [e["name"] for e in tensorflow["env"]] == ["TF_CONFIG"]
    assert tensorflow["ports"] == [TFJOB_PORT]


def test_single_pod_job_gets_no_tf_config() -> None:
    pod = children(specs(Worker=replica(1)))["mnist-worker-0"]
    assert "env" not in pod["spec"]["containers"][0]
    assert pod["spec"]["containers"][0]["ports"] == [TFJOB_PORT]


def test_evaluator_is_out_of_the_training_cluster_but_in_its_own() -> None:
    pods = children(specs(Chief=replica(1), Worker=replica(1), Evaluator=replica(1)))
    training = (
        '{"chief":["mnist-chief-0.mnist.ml.svc.cluster.local:2222"],'
        '"worker":["mnist-worker-0.mnist.ml.svc.cluster.local:2222"]}'
    )
    assert env_of(pods["mnist-worker-0"])["TF_CONFIG"] == (
        '{"cluster":' + training + ',"task":{"type":"worker","index":0},"environment":"cloud"}'
    )
    assert env_of(pods["mnist-evaluator-0"])["TF_CONFIG"] == (
        '{"cluster":{"chief":["mnist-chief-0.mnist.ml.svc.cluster.local:2222"],'
        '"evaluator":["mnist-evaluator-0.mnist.ml.svc.cluster.local:2222"],'
        '"worker":["mnist-worker-0.mnist.ml.svc.cluster.local:2222"]},'
        '"task":{"type":"evaluator","index":0},"environment":"cloud"}'
    )


def test_cluster_domain_comes_from_settings() -> None:
    settings = OperatorSettings(cluster_domain="corp.example")
    pods = children(specs(Worker=replica(2)), settings=settings)
    assert tf_config_of(pods["mnist-worker-0"])["cluster"] == {
        "worker": [
            "mnist-worker-0.mnist.ml.svc.corp.example:2222",
            "mnist-worker-1.mnist.ml.svc.corp.example:2222",
        ]
    }


# ----- the tfjob-port -------------------------------------------------------------------------


def test_tfjob_port_is_added_next_to_other_ports() -> None:
    metrics = {"name": "metrics", "containerPort": 9090}
    pod = children(specs(Worker=replica(1, containers=[trainer(ports=[metrics])])))[
        "mnist-worker-0"
    ]
    assert pod["spec"]["containers"][0]["ports"] == [metrics, TFJOB_PORT]


def test_declared_tfjob_port_is_kept_and_used_in_tf_config() -> None:
    declared = {"name": "tfjob-port", "containerPort": 3333}
    pods = children(
        specs(Chief=replica(1, containers=[trainer(ports=[declared])]), Worker=replica(2))
    )
    assert pods["mnist-chief-0"]["spec"]["containers"][0]["ports"] == [declared]
    assert pods["mnist-worker-0"]["spec"]["containers"][0]["ports"] == [TFJOB_PORT]
    expected_cluster = {
        "chief": ["mnist-chief-0.mnist.ml.svc.cluster.local:3333"],
        "worker": [
            "mnist-worker-0.mnist.ml.svc.cluster.local:2222",
            "mnist-worker-1.mnist.ml.svc.cluster.local:2222",
        ],
    }
    for pod in pods.values():
        assert tf_config_of(pod)["cluster"] == expected_cluster


def test_declared_port_sets_the_evaluators_own_address() -> None:
    declared = {"name": "tfjob-port", "containerPort": 7000}
    pods = children(
        specs(Worker=replica(1), Evaluator=replica(1, containers=[trainer(ports=[declared])]))
    )
    assert tf_config_of(pods["mnist-evaluator-0"])["cluster"]["evaluator"] == [
        "mnist-evaluator-0.mnist.ml.svc.cluster.local:7000"
    ]


# ----- the spec hash --------------------------------------------------------------------------


def test_spec_hash_is_a_digest_of_the_pod_without_the_hash() -> None:
    pod, digest = without_hash(children(PS_JOB)["mnist-worker-0"])
    canonical = json.dumps(pod, sort_keys=True, separators=(",", ":"))
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert spec_hash(pod) == digest


def test_spec_hash_is_stable_across_builds() -> None:
    first = children(PS_JOB)
    second = children(specs(**PS_JOB.model_dump(by_alias=True, exclude_none=True, mode="json")))
    for name, pod in first.items():
        assert pod["metadata"]["annotations"][HASH] == second[name]["metadata"]["annotations"][HASH]


def test_spec_hash_ignores_key_order_and_how_a_quantity_is_written() -> None:
    one = specs(
        Worker=replica(
            2,
            containers=[
                trainer(resources={"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}}),
            ],
            volumes=[{"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
        )
    )
    other = specs(
        Worker={
            "template": {
                "spec": {
                    "volumes": [
                        {"emptyDir": {"sizeLimit": "1Gi", "medium": "Memory"}, "name": "data"}
                    ],
                    "containers": [
                        {
                            "resources": {"limits": {"memory": "8Gi", "nvidia.com/gpu": "1"}},
                            "command": ["python", "train.py"],
                            "image": "tf:2.21",
                            "name": "tensorflow",
                        }
                    ],
                }
            },
            "replicas": 2,
        }
    )
    hashes = [
        {n: p["metadata"]["annotations"][HASH] for n, p in children(s).items()}
        for s in (one, other)
    ]
    assert hashes[0] == hashes[1]


def test_spec_hash_changes_when_the_template_changes() -> None:
    before = children(specs(Worker=replica(2)))["mnist-worker-0"]
    after = children(specs(Worker=replica(2, containers=[trainer(image="tf:2.22")])))[
        "mnist-worker-0"
    ]
    assert before["metadata"]["annotations"][HASH] != after["metadata"]["annotations"][HASH]


def test_spec_hash_changes_when_the_cluster_changes() -> None:
    two = children(specs(Worker=replica(2)))["mnist-worker-0"]
    three = children(specs(Worker=replica(3)))["mnist-worker-0"]
    assert two["metadata"]["annotations"][HASH] != three["metadata"]["annotations"][HASH]


def test_each_pod_has_its_own_spec_hash() -> None:
    hashes = [p["metadata"]["annotations"][HASH] for p in children(PS_JOB).values()]
    assert len(set(hashes)) == len(hashes)


# ----- build_pod directly ---------------------------------------------------------------------


def test_build_pod_without_cluster_sets_no_tf_config() -> None:
    spec = ReplicaSpec.model_validate(replica(1))
    pod = build_pod(
        JOB,
        ReplicaType.CHIEF,
        0,
        spec,
        cluster=None,
        port=2222,
        is_chief=True,
        node_pool=None,
        settings=SETTINGS,
    )
    assert "env" not in pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"]["tfjob.dev/job-role"] == "chief"


def test_build_pod_does_not_change_its_replica_spec() -> None:
    spec = ReplicaSpec.model_validate(replica(1, containers=GPU_WORKER))
    before = spec.model_dump(by_alias=True)
    build_pod(
        JOB,
        ReplicaType.WORKER,
        0,
        spec,
        cluster={"worker": ["a:2222", "b:2222"]},
        port=2222,
        is_chief=False,
        node_pool="gpu-a100",
        settings=SETTINGS,
    )
    assert spec.model_dump(by_alias=True) == before
