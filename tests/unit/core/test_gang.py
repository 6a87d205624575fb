"""Who is in a job's gang, and which PodGroup API a cluster offers."""

from __future__ import annotations

import pytest

from tfjob_operator.api.v1alpha1 import ReplicaSpecs
from tfjob_operator.core.gang import gang_members, min_count, pick_pod_group_api

pytestmark = pytest.mark.timeout(10)

TEMPLATE = {"spec": {"containers": [{"name": "tensorflow", "image": "tf:2.21"}]}}


def specs(**counts: int) -> ReplicaSpecs:
    return ReplicaSpecs.model_validate(
        {kind: {"replicas": n, "template": TEMPLATE} for kind, n in counts.items()}
    )


@pytest.mark.parametrize(
    ("served", "picked"),
    [
        ({"scheduling.k8s.io/v1", "scheduling.k8s.io/v1alpha2"}, "scheduling.k8s.io/v1alpha2"),
        (  # 1.37: beta, with v1alpha3 beside it
            {"scheduling.k8s.io/v1", "scheduling.k8s.io/v1alpha3", "scheduling.k8s.io/v1beta1"},
            "scheduling.k8s.io/v1beta1",
        ),
        ({"scheduling.k8s.io/v1"}, None),  # PriorityClasses only: no gang scheduling
        (set(), None),
    ],
)
def test_the_newest_served_pod_group_api_is_picked(served: set[str], picked: str | None) -> None:
    assert pick_pod_group_api(served) == picked


def test_every_pod_but_an_evaluator_and_a_launcher_is_in_the_gang() -> None:
    assert gang_members("j", specs(Chief=1, Worker=2, PS=1, Evaluator=1)) == [
        "j-chief-0",
        "j-worker-0",
        "j-worker-1",
        "j-ps-0",
    ]
    assert gang_members("j", specs(Launcher=1, Worker=2)) == ["j-worker-0", "j-worker-1"]


def test_min_count_is_min_available_or_the_whole_gang() -> None:
    assert min_count(8, None) == 8
    assert min_count(8, 3) == 3
