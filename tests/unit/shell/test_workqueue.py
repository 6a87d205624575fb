"""One pass per job at a time, triggers coalesced, failures retried with growing delays."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tfjob_operator.shell import workqueue
from tfjob_operator.shell.workqueue import WorkQueue

pytestmark = [pytest.mark.timeout(10), pytest.mark.asyncio]


async def test_triggers_during_a_pass_coalesce_into_one_more_pass() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    passes: list[str] = []
    concurrent = 0
    most_concurrent = 0

    async def work(key: object) -> None:
        nonlocal concurrent, most_concurrent
        concurrent += 1
        most_concurrent = max(most_concurrent, concurrent)
        passes.append(str(key))
        started.set()
        await release.wait()
        concurrent -= 1

    queue = WorkQueue(work)
    queue.trigger("job")
    await started.wait()
    for _ in range(5):
        queue.trigger("job")
    release.set()
    await queue.drain()
    assert passes == ["job", "job"]
    assert most_concurrent == 1


async def test_different_keys_run_concurrently() -> None:
    both = asyncio.Barrier(2)

    async def work(key: object) -> None:
        await asyncio.wait_for(both.wait(), timeout=2)

    queue = WorkQueue(work)
    queue.trigger("a")
    queue.trigger("b")
    await queue.drain()  # would time out inside work() if the keys were serialized


async def test_failures_retry_with_doubling_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workqueue, "MIN_RETRY_DELAY", 0.01)
    attempts: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def work(key: object) -> None:
        attempts.append(loop.time())
        if len(attempts) < 4:
            raise RuntimeError("API server unavailable")
        done.set()

    queue = WorkQueue(work)
    queue.trigger("job")
    await asyncio.wait_for(done.wait(), timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 4
    assert gaps[0] >= 0.01
    assert gaps[1] >= 0.02
    assert gaps[2] >= 0.04
    await queue.drain()
    assert queue.failures("job") == 0
