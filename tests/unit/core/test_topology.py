"""Pod names, DNS names and TF_CONFIG: the network identities every pod of a job relies on."""

from __future__ import annotations

import json

import pytest

from tfjob_operator.api.v1alpha1 import ReplicaType
from tfjob_operator.core.topology import (
    DEFAULT_PORT,
    PORT_NAME,
    ReplicaGroup,
    cluster_spec,
    declared_port,
    is_distributed,
    pod_fqdn,
    pod_name,
    tf_config,
    tf_task_type,
    trainer_container,
)

pytestmark = pytest.mark.timeout(10)

DOMAIN = "cluster.local"


# ----- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replica_type", "task_type"),
    [
        (ReplicaType.CHIEF, "chief"),
        (ReplicaType.MASTER, "master"),
        (ReplicaType.WORKER, "worker"),
        (ReplicaType.PS, "ps"),
        (ReplicaType.EVALUATOR, "evaluator"),
    ],
)
def test_tf_task_type_is_the_lower_case_replica_type(
    replica_type: ReplicaType, task_type: str
) -> None:
    assert tf_task_type(replica_type) == task_type


@pytest.mark.parametrize(
    ("replica_type", "index", "name"),
    [
        (ReplicaType.CHIEF, 0, "mnist-chief-0"),
        (ReplicaType.MASTER, 0, "mnist-master-0"),
        (ReplicaType.WORKER, 0, "mnist-worker-0"),
        (ReplicaType.WORKER, 11, "mnist-worker-11"),
        (ReplicaType.PS, 2, "mnist-ps-2"),
        (ReplicaType.EVALUATOR, 0, "mnist-evaluator-0"),
    ],
)
def test_pod_name_is_job_type_index(replica_type: ReplicaType, index: int, name: str) -> None:
    assert pod_name("mnist", replica_type, index) == name


def test_pod_fqdn_goes_through_the_jobs_headless_service() -> None:
    assert (
        pod_fqdn("mnist", "ml-team", "mnist-worker-1", DOMAIN)
        == "mnist-worker-1.mnist.ml-team.svc.cluster.local"
    )


def test_pod_fqdn_uses_the_configured_cluster_domain() -> None:
    assert (
        pod_fqdn("mnist", "default", "mnist-ps-0", "corp.example")
        == "mnist-ps-0.mnist.default.svc.corp.example"
    )


# ----- the trainer container and its port ----------------------------------------------------


def test_trainer_container_is_the_one_named_tensorflow_wherever_it_is() -> None:
    sidecar = {"name": "istio-proxy"}
    trainer = {"name": "tensorflow"}
    assert trainer_container([sidecar, trainer]) is trainer


def test_trainer_container_falls_back_to_the_first() -> None:
    first = {"name": "main"}
    assert trainer_container([first, {"name": "logger"}]) is first


def test_declared_port_defaults_to_2222() -> None:
    assert DEFAULT_PORT == 2222
    assert declared_port([{"name": "tensorflow"}]) == 2222
    assert declared_port([{"name": "tensorflow", "ports": []}]) == 2222


def test_declared_port_reads_the_trainers_tfjob_port() -> None:
    containers = [
        {
            "name": "tensorflow",
            "ports": [
                {"name": "metrics", "containerPort": 9090},
                {"name": PORT_NAME, "containerPort": 3333},
            ],
        }
    ]
    assert PORT_NAME == "tfjob-port"
    assert declared_port(containers) == 3333


def test_declared_port_ignores_ports_with_other_names() -> None:
    containers = [{"name": "tensorflow", "ports": [{"name": "http", "containerPort": 8080}]}]
    assert declared_port(containers) == 2222


def test_declared_port_ignores_a_sidecars_tfjob_port() -> None:
    containers = [
        {"name": "sidecar", "ports": [{"name": PORT_NAME, "containerPort": 4444}]},
        {"name": "tensorflow"},
    ]
    assert declared_port(containers) == 2222


def test_declared_port_of_a_first_container_not_named_tensorflow() -> None:
    containers = [
        {"name": "main", "ports": [{"name": PORT_NAME, "containerPort": 5555}]},
        {"name": "logger"},
    ]
    assert declared_port(containers) == 5555


# ----- is_distributed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "distributed"),
    [
        ([ReplicaGroup(ReplicaType.WORKER, 1, 2222)], False),
        ([ReplicaGroup(ReplicaType.CHIEF, 1, 2222)], False),
        ([ReplicaGroup(ReplicaType.WORKER, 2, 2222)], True),
        (
            [ReplicaGroup(ReplicaType.CHIEF, 1, 2222), ReplicaGroup(ReplicaType.WORKER, 1, 2222)],
            True,
        ),
        (
            [ReplicaGroup(ReplicaType.CHIEF, 0, 2222), ReplicaGroup(ReplicaType.WORKER, 1, 2222)],
            False,
        ),
        (
            [
                ReplicaGroup(ReplicaType.WORKER, 1, 2222),
                ReplicaGroup(ReplicaType.EVALUATOR, 1, 2222),
            ],
            True,
        ),
        ([], False),
    ],
    ids=[
        "one-worker",
        "one-chief",
        "two-workers",
        "chief-and-worker",
        "zero-chief-one-worker",
        "worker-and-evaluator",
        "nothing",
    ],
)
def test_is_distributed_means_more_than_one_pod(
    groups: list[ReplicaGroup], distributed: bool
) -> None:
    assert is_distributed(groups) is distributed


def test_is_distributed_accepts_any_iterable() -> None:
    groups = (g for g in [ReplicaGroup(ReplicaType.WORKER, 3, 2222)])
    assert is_distributed(groups) is True


# ----- cluster_spec --------------------------------------------------------------------------

PS_JOB = [
    # Deliberately not in alphabetical order: the cluster's keys must be sorted anyway.
    ReplicaGroup(ReplicaType.WORKER, 2, 2222),
    ReplicaGroup(ReplicaType.PS, 1, 2222),
    ReplicaGroup(ReplicaType.CHIEF, 1, 2222),
]


def test_cluster_spec_of_chief_two_workers_and_a_ps() -> None:
    cluster = cluster_spec("mnist", "ml", PS_JOB, DOMAIN)
    assert cluster == {
        "chief": ["mnist-chief-0.mnist.ml.svc.cluster.local:2222"],
        "ps": ["mnist-ps-0.mnist.ml.svc.cluster.local:2222"],
        "worker": [
            "mnist-worker-0.mnist.ml.svc.cluster.local:2222",
            "mnist-worker-1.mnist.ml.svc.cluster.local:2222",
        ],
    }
    assert list(cluster) == ["chief", "ps", "worker"]


def test_cluster_spec_leaves_the_evaluator_out() -> None:
    groups = [*PS_JOB, ReplicaGroup(ReplicaType.EVALUATOR, 1, 2222)]
    cluster = cluster_spec("mnist", "ml", groups, DOMAIN)
    assert "evaluator" not in cluster
    assert list(cluster) == ["chief", "ps", "worker"]


def test_cluster_spec_skips_replica_types_with_zero_replicas() -> None:
    groups = [ReplicaGroup(ReplicaType.CHIEF, 0, 2222), ReplicaGroup(ReplicaType.WORKER, 2, 2222)]
    assert cluster_spec("j", "ns", groups, DOMAIN) == {
        "worker": [
            "j-worker-0.j.ns.svc.cluster.local:2222",
            "j-worker-1.j.ns.svc.cluster.local:2222",
        ]
    }


def test_cluster_spec_uses_each_groups_own_port_and_the_cluster_domain() -> None:
    groups = [ReplicaGroup(ReplicaType.MASTER, 1, 3333), ReplicaGroup(ReplicaType.WORKER, 1, 4444)]
    assert cluster_spec("j", "ns", groups, "example.org") == {
        "master": ["j-master-0.j.ns.svc.example.org:3333"],
        "worker": ["j-worker-0.j.ns.svc.example.org:4444"],
    }


def test_cluster_spec_lists_workers_in_index_order() -> None:
    cluster = cluster_spec("j", "ns", [ReplicaGroup(ReplicaType.WORKER, 12, 2222)], DOMAIN)
    assert [host.split(".")[0] for host in cluster["worker"]] == [
        f"j-worker-{i}" for i in range(12)
    ]


# ----- tf_config -----------------------------------------------------------------------------

CLUSTER = {
    "chief": ["mnist-chief-0.mnist.ml.svc.cluster.local:2222"],
    "ps": ["mnist-ps-0.mnist.ml.svc.cluster.local:2222"],
    "worker": [
        "mnist-worker-0.mnist.ml.svc.cluster.local:2222",
        "mnist-worker-1.mnist.ml.svc.cluster.local:2222",
    ],
}


def test_tf_config_of_a_worker_is_compact_json_in_a_fixed_order() -> None:
    text = tf_config(
        CLUSTER,
        ReplicaType.WORKER,
        1,
        own_address="mnist-worker-1.mnist.ml.svc.cluster.local:2222",
    )
    assert text == (
        '{"cluster":{"chief":["mnist-chief-0.mnist.ml.svc.cluster.local:2222"],'
        '"ps":["mnist-ps-0.mnist.ml.svc.cluster.local:2222"],'
        '"worker":["mnist-worker-0.mnist.ml.svc.cluster.local:2222",'
        '"mnist-worker-1.mnist.ml.svc.cluster.local:2222"]},'
        '"task":{"type":"worker","index":1},'
        '"environment":"cloud"}'
    )


def test_tf_config_of_the_chief() -> None:
    text = tf_config(
        CLUSTER, ReplicaType.CHIEF, 0, own_address="mnist-chief-0.mnist.ml.svc.cluster.local:2222"
    )
    document = json.loads(text)
    assert document == {
        "cluster": CLUSTER,
        "task": {"type": "chief", "index": 0},
        "environment": "cloud",
    }
    assert list(document) == ["cluster", "task", "environment"]


def test_tf_config_sorts_cluster_keys_whatever_the_input_order() -> None:
    unsorted = {"worker": CLUSTER["worker"], "ps": CLUSTER["ps"], "chief": CLUSTER["chief"]}
    text = tf_config(unsorted, ReplicaType.PS, 0, own_address=CLUSTER["ps"][0])
    assert list(json.loads(text)["cluster"]) == ["chief", "ps", "worker"]


def test_tf_config_of_the_evaluator_adds_only_itself_to_the_training_cluster() -> None:
    own = "mnist-evaluator-0.mnist.ml.svc.cluster.local:2222"
    text = tf_config(CLUSTER, ReplicaType.EVALUATOR, 0, own_address=own)
    assert text == (
        '{"cluster":{"chief":["mnist-chief-0.mnist.ml.svc.cluster.local:2222"],'
        '"evaluator":["mnist-evaluator-0.mnist.ml.svc.cluster.local:2222"],'
        '"ps":["mnist-ps-0.mnist.ml.svc.cluster.local:2222"],'
        '"worker":["mnist-worker-0.mnist.ml.svc.cluster.local:2222",'
        '"mnist-worker-1.mnist.ml.svc.cluster.local:2222"]},'
        '"task":{"type":"evaluator","index":0},'
        '"environment":"cloud"}'
    )


def test_tf_config_of_the_evaluator_does_not_change_the_shared_cluster() -> None:
    cluster = {key: list(hosts) for key, hosts in CLUSTER.items()}
    tf_config(cluster, ReplicaType.EVALUATOR, 0, own_address="e:2222")
    assert cluster == CLUSTER


def test_tf_config_of_a_training_task_ignores_its_own_address() -> None:
    text = tf_config(CLUSTER, ReplicaType.WORKER, 0, own_address="somewhere-else:1")
    assert json.loads(text)["cluster"] == CLUSTER
    assert "somewhere-else" not in text


def test_tf_config_has_no_whitespace() -> None:
    text = tf_config(CLUSTER, ReplicaType.WORKER, 0, own_address=CLUSTER["worker"][0])
    assert " " not in text
    assert "\n" not in text


def test_cluster_spec_and_tf_config_together_for_master_job() -> None:
    groups = [ReplicaGroup(ReplicaType.MASTER, 1, 2222), ReplicaGroup(ReplicaType.WORKER, 1, 2222)]
    cluster = cluster_spec("legacy", "default", groups, DOMAIN)
    assert tf_config(cluster, ReplicaType.MASTER, 0, own_address=cluster["master"][0]) == (
        '{"cluster":{"master":["legacy-master-0.legacy.default.svc.cluster.local:2222"],'
        '"worker":["legacy-worker-0.legacy.default.svc.cluster.local:2222"]},'
        '"task":{"type":"master","index":0},"environment":"cloud"}'
    )
