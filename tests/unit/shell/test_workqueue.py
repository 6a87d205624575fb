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


def _one_slot_held_by_busy() -> tuple[WorkQueue, list[str], asyncio.Event]:
    """A queue of one slot whose work records each pass; key "busy" holds the slot until the
    event is set."""
    release = asyncio.Event()
    passes: list[str] = []

    async def work(key: object) -> None:
        passes.append(str(key))
        if key == "busy":
            await release.wait()

    return WorkQueue(work, max_concurrent=1), passes, release


async def test_background_passes_wait_behind_every_foreground_one() -> None:
    """An operator restarted among thousands of finished jobs passes over each in the
    background: a new job's pass, asked for later, starts first."""
    queue, passes, release = _one_slot_held_by_busy()
    queue.trigger("busy")
    await asyncio.sleep(0)  # it holds the one slot
    for old in ("old-1", "old-2", "old-3"):
        queue.trigger(old, background=True)
    queue.trigger("new")
    queue.trigger("old-3")  # news of a finished job: it moves to the foreground
    queue.trigger("new", background=True)  # already waiting in the foreground: stays there
    release.set()
    await queue.drain()
    assert passes[0] == "busy"
    assert sorted(passes[1:3]) == ["new", "old-3"]
    assert passes[3:] == ["old-1", "old-2"]  # the background, in the order it was asked for


async def test_a_cancelled_waiter_hands_its_slot_on() -> None:
    queue, passes, release = _one_slot_held_by_busy()
    queue.trigger("busy")
    await asyncio.sleep(0)
    queue.trigger("gone", background=True)
    queue.trigger("next", background=True)
    await asyncio.sleep(0)
    queue._tasks["gone"].cancel()
    release.set()
    await queue.drain()
    assert passes == ["busy", "next"]
