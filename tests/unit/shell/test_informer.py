"""The informer's cache: watch events in, observations by job out, a callback only on change."""

from __future__ import annotations

from typing import Any

import pytest

from tfjob_operator.core.observed import PodObservation, controlled_by_a_job
from tfjob_operator.shell.informer import Informer, watch_scopes

pytestmark = pytest.mark.timeout(10)

LABEL = "tfjob.dev/job-name"


def pod(name: str, job: str | None, phase: str = "Pending", **metadata: Any) -> dict[str, Any]:
    labels = {LABEL: job} if job else {}
    return {
        "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}", "labels": labels}
        | metadata,
        "spec": {"nodeName": metadata.pop("node", None)},
        "status": {"phase": phase},
    }


def informer(namespaces: list[str] | None = None) -> tuple[Informer, list[tuple[str, str]]]:
    changed: list[tuple[str, str]] = []
    cache = Informer(None, "pods", LABEL, PodObservation.from_pod, changed.append, namespaces)  # type: ignore[arg-type]
    return cache, changed


def names(cache: Informer, job: str) -> list[str]:
    return sorted(p.name for p in cache.get(("ml", job)))


def test_events_keep_observations_by_job_and_call_back_only_on_change() -> None:
    cache, changed = informer()
    cache.apply("ADDED", pod("a-0", "a"))
    cache.apply("ADDED", pod("a-1", "a"))
    assert names(cache, "a") == ["a-0", "a-1"]
    assert changed == [("ml", "a"), ("ml", "a")]
    changed.clear()
    bound = pod("a-0", "a")
    bound["spec"]["nodeName"] = "gpu-a100-0"  # the scheduler's binding changes nothing we read
    cache.apply("MODIFIED", bound)
    assert changed == []
    cache.apply("MODIFIED", pod("a-0", "a", "Running"))
    assert changed == [("ml", "a")]
    assert {p.phase for p in cache.get(("ml", "a"))} == {"Running", "Pending"}
    cache.apply("DELETED", pod("a-0", "a", "Running"))
    assert names(cache, "a") == ["a-1"]
    assert len(cache) == 1


def test_a_pod_relabelled_to_another_job_moves_and_both_jobs_hear_of_it() -> None:
    cache, changed = informer()
    cache.apply("ADDED", pod("x", "a"))
    changed.clear()
    cache.apply("MODIFIED", pod("x", "b"))
    assert names(cache, "a") == []
    assert names(cache, "b") == ["x"]
    assert changed == [("ml", "a"), ("ml", "b")]
    cache.apply("MODIFIED", pod("x", None))
    assert names(cache, "b") == []
    assert len(cache) == 0


def test_a_fresh_list_forgets_what_it_lacks_in_its_scope_only() -> None:
    cache, changed = informer(["ml", "other"])
    cache.apply("ADDED", pod("a-0", "a"))
    cache.apply("ADDED", pod("a-1", "a"))
    elsewhere = pod("c-0", "c")
    elsewhere["metadata"]["namespace"] = "other"
    cache.apply("ADDED", elsewhere)
    changed.clear()
    told: list[tuple[tuple[str, str], str]] = []
    cache.on_deleted = lambda key, last, before: told.append((key, last.name))
    cache._replace("ml", [cache.entry(pod("a-1", "a"))])  # a-0 went while the watch was down
    assert names(cache, "a") == ["a-1"]
    # Told like a deletion watched: the controller decides whether it was taken.
    assert told == [(("ml", "a"), "a-0")]
    assert [p.name for p in cache.get(("other", "c"))] == ["c-0"]
    assert changed == [("ml", "a")]


@pytest.mark.parametrize(
    ("namespaces", "scopes", "counted", "ignored"),
    [
        ([], [None], ["any"], []),
        (["team-a", "team-b", "team-a"], ["team-a", "team-b"], ["team-a"], []),
        (["team-*", "!team-x"], [None], ["team-a"], ["team-x", "ml"]),
    ],
)
def test_watch_scopes_follow_kopfs_namespace_options(
    namespaces: list[str], scopes: list[str | None], counted: list[str], ignored: list[str]
) -> None:
    where, counts = watch_scopes(namespaces)
    assert where == scopes
    assert all(counts(n) for n in counted)
    assert not any(counts(n) for n in ignored)


def test_pods_outside_the_watched_namespaces_are_not_kept() -> None:
    cache, changed = informer(["team-*"])
    cache.apply("ADDED", pod("a-0", "a"))  # namespace ml
    assert len(cache) == 0
    assert changed == []


def test_a_deleted_pod_is_told_with_its_state_before_its_deletion_began() -> None:
    """The pod garbage collector fails a lost node's pod, then force-deletes it: the watch shows
    Failed, then Failed and going, then DELETED. A graceful deletion of a running pod shows it
    going while Running, then Failed (its containers killed), then DELETED. What the operator
    must tell apart is what the pod was before anyone deleted it."""
    told: list[tuple[str, str, str | None]] = []
    cache, _ = informer()
    cache.on_deleted = lambda key, last, before: told.append(
        (last.name, last.phase, before.phase if before else None)
    )
    going = {"deletionTimestamp": "2026-12-01T04:56:55Z", "deletionGracePeriodSeconds": 0}
    cache.apply("ADDED", pod("lost", "a", "Running"))
    cache.apply("MODIFIED", pod("lost", "a", "Failed"))
    cache.apply("MODIFIED", pod("lost", "a", "Failed", **going))
    cache.apply("DELETED", pod("lost", "a", "Failed", **going))
    graceful = {**going, "deletionGracePeriodSeconds": 30}
    cache.apply("ADDED", pod("killed", "a", "Running"))
    cache.apply("MODIFIED", pod("killed", "a", "Running", **graceful))
    cache.apply("MODIFIED", pod("killed", "a", "Failed", **graceful))
    cache.apply("MODIFIED", pod("killed", "a", "Failed", **going))
    cache.apply("DELETED", pod("killed", "a", "Failed", **going))
    cache.apply("ADDED", pod("listed-going", "a", "Failed", **going))  # a list shows it going
    cache.apply("DELETED", pod("listed-going", "a", "Failed", **going))
    cache.apply("ADDED", pod("gone", "a", "Succeeded"))  # removed with no deletion shown
    cache.apply("DELETED", pod("gone", "a", "Succeeded"))
    assert told == [
        ("lost", "Failed", "Failed"),
        ("killed", "Failed", "Running"),
        ("listed-going", "Failed", None),
        ("gone", "Succeeded", "Succeeded"),
    ]
    assert not cache._before_deletion  # nothing kept of pods that are gone


def test_pods_a_job_does_not_control_are_neither_cached_nor_told() -> None:
    """Anyone may label a pod with a job's name; only the pods a TensorFlowJob controls are
    the operator's to keep (a tenant's thousands of labelled pods cost a check each)."""
    changed: list[tuple[str, str]] = []
    cache = Informer(
        None,  # type: ignore[arg-type]
        "pods",
        LABEL,
        PodObservation.from_pod,
        changed.append,
        accepts=controlled_by_a_job,
    )
    job = {"apiVersion": "tfjob.dev/v1alpha1", "kind": "TensorFlowJob", "name": "a"}
    owned = pod("a-worker-0", "a", ownerReferences=[{**job, "uid": "u", "controller": True}])
    cache.apply("ADDED", owned)
    for name, owners in [
        ("labelled", []),
        ("not-controller", [{**job, "uid": "u"}]),
        ("batch-job", [{"apiVersion": "batch/v1", "kind": "Job", "uid": "j", "controller": True}]),
        ("other-group", [{**job, "apiVersion": "kubeflow.org/v1", "uid": "u", "controller": True}]),
    ]:
        cache.apply("ADDED", pod(name, "a", ownerReferences=owners))
    assert names(cache, "a") == ["a-worker-0"]
    assert changed == [("ml", "a")]
    assert len(cache) == 1
    # A pod its job releases (its owner reference removed) leaves the cache, and the job hears.
    cache.apply("MODIFIED", pod("a-worker-0", "a", ownerReferences=[]))
    assert names(cache, "a") == []
    assert changed == [("ml", "a"), ("ml", "a")]


class _Pages:
    """A stand-in for Kube.list_page: the pods in pages of two, and each page as it went."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pages = [pods[i : i + 2] for i in range(0, len(pods), 2)]
        self.served: list[dict[str, Any]] = []

    async def list_page(self, path: str, **_: Any) -> dict[str, Any]:
        index = len(self.served)
        page = {
            "items": list(self.pages[index]),
            "metadata": {
                "resourceVersion": "7",
                "continue": "more" * (index + 1 < len(self.pages)),
            },
        }
        self.served.append(page)
        return page


@pytest.mark.asyncio
async def test_a_list_is_observed_page_by_page_and_keeps_only_observations() -> None:
    kube = _Pages([pod("a-0", "a"), pod("b-0", "b"), pod("stranger", None), pod("a-1", "a")])
    observed: list[str] = []

    def observe(obj: dict[str, Any]) -> PodObservation:
        observed.append(obj["metadata"]["name"])
        return PodObservation.from_pod(obj)

    cache = Informer(kube, "pods", LABEL, observe, lambda key: None)  # type: ignore[arg-type]
    entries, version = await cache.listwatch.list_all(None)
    assert version == "7"
    # Each page's objects were taken in as it came: none of the pages still holds them.
    assert [page.get("items") for page in kube.served] == [None, None]
    assert all(not isinstance(e, dict) for e in entries)
    assert observed == ["a-0", "b-0", "a-1"]  # the unlabelled pod is never observed
    cache._replace(None, entries)
    assert names(cache, "a") == ["a-0", "a-1"]
    assert names(cache, "b") == ["b-0"]
    assert len(cache) == 3


def test_an_object_first_seen_as_foreseen_is_kept_and_nobody_told() -> None:
    """A job's own create seen by the watch: its pass counted it already."""
    cache, changed = informer()
    made = PodObservation.from_pod(pod("a-0", "a"))
    cache.foreseen = lambda key, observation: key == ("ml", "a") and observation == made
    cache.apply("ADDED", pod("a-0", "a"))
    assert names(cache, "a") == ["a-0"]
    assert changed == []
    cache.apply("ADDED", pod("a-1", "a"))  # not what a pass made: news
    assert changed == [("ml", "a")]
    changed.clear()
    cache.apply("MODIFIED", pod("a-0", "a", "Running"))  # foreseen only at first sight
    assert changed == [("ml", "a")]
