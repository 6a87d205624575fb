"""The Events outbox: bounded per job, coalesced, in order, never holding a job's body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tfjob_operator.core.events import JobEvent
from tfjob_operator.shell import metrics
from tfjob_operator.shell.outbox import Outbox

pytestmark = [pytest.mark.timeout(10), pytest.mark.asyncio]


def job(name: str, uid: str = "u", version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"{uid}-{name}",
            "resourceVersion": version,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"entryScript": "train.py", "scriptParams": {"x": "y" * 10_000}},
        "status": {"state": "Running"},
    }


def event(n: int) -> JobEvent:
    return JobEvent("Normal", "Restarting", f"restart {n}")


async def test_a_slow_api_server_holds_at_most_the_bound_per_job_and_no_job_body() -> None:
    """Events rate-limited (a POST waiting): a thousand passes add events meanwhile."""
    release = asyncio.Event()
    posted: list[tuple[dict[str, Any], JobEvent]] = []

    async def post(ref: dict[str, Any], what: JobEvent) -> None:
        await release.wait()
        posted.append((ref, what))

    outbox = Outbox(post, senders=2, per_job=4)
    dropped = metrics.EVENTS_DROPPED._value.get()
    for n in range(1000):
        outbox.add(job("a", version=str(n)), [event(n)])
        outbox.add(job("b"), [event(0)])  # the same news again and again: queued once
    await asyncio.sleep(0)
    assert len(outbox) <= 4 + 1
    assert metrics.EVENTS_DROPPED._value.get() - dropped >= 1000 - 4 - 2
    release.set()
    await outbox.drain()
    by_job: dict[str, list[str]] = {}
    for ref, what in posted:
        assert "spec" not in ref
        assert "managedFields" not in ref["metadata"]
        by_job.setdefault(ref["metadata"]["name"], []).append(what.message)
    assert by_job["b"] == ["restart 0"]
    # a's first event was taken by a sender before the flood; the newest four stayed, in order.
    assert by_job["a"][-4:] == [f"restart {n}" for n in range(996, 1000)]
    assert len(outbox) == 0


async def test_each_jobs_events_go_in_order_and_a_failed_post_loses_only_itself() -> None:
    posted: list[str] = []

    async def post(ref: dict[str, Any], what: JobEvent) -> None:
        if what.message == "restart 1":
            raise RuntimeError("429 Too Many Requests")
        posted.append(f"{ref['metadata']['name']}: {what.message}")

    outbox = Outbox(post)
    outbox.add(job("a"), [event(0), event(1), event(2)])
    outbox.add(job("a", uid="v"), [event(3)])  # a new job of the same name: its own entry
    await outbox.drain()
    assert posted == ["a: restart 0", "a: restart 2", "a: restart 3"]
