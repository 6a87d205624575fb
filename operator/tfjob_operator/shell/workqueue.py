"""Run the passes over jobs: one at a time per job, a bounded number at once, triggers
coalesced, failures retried with backoff, and later looks scheduled.

A job's own events, its children's events and its timers all ask for passes, and would run
them over the same job concurrently. Here a trigger for a job whose pass is running only marks
it dirty: the running pass is followed by exactly one more; a trigger for a job still waiting for
a slot adds nothing. A pass that raises is retried after a growing delay (1 s doubling to 60 s),
so a failing API never turns into a retry storm, and at most ``max_concurrent`` passes run at
once, so a burst of a thousand jobs queues instead of opening a thousand requests.

Passes wait for a slot in two lanes: a job's first pass may be asked for in the background
(an operator restarted among ten thousand finished jobs passes over each once), and every
pass waiting in the foreground starts before any waiting in the background, so a new job is
not queued behind the history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from . import metrics

log = logging.getLogger(__name__)

MIN_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 60.0
DEFAULT_CONCURRENCY = 256


def _describe(key: Hashable) -> str:
    """`namespace/name` for the (namespace, name) keys jobs use."""
    if isinstance(key, tuple) and all(isinstance(part, str) for part in key):
        return "/".join(key)
    return str(key)


class _Slots:
    """At most ``size`` holders at once. Waiters are served in the order they came, every one
    of the foreground lane before any of the background lane."""

    def __init__(self, size: int) -> None:
        self._free = size
        # Waiters by key, in order (dicts keep their insertion order): foreground, background.
        self._lanes: tuple[dict[Hashable, asyncio.Future[None]], ...] = ({}, {})

    async def acquire(self, key: Hashable, background: bool) -> None:
        if self._free > 0:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes[1 if background else 0][key] = future
        try:
            await future
        except asyncio.CancelledError:
            for lane in self._lanes:
                if lane.get(key) is future:
                    del lane[key]
            if future.done() and not future.cancelled():
                self.release()  # handed a slot as it was cancelled: pass it on
            raise

    def release(self) -> None:
        for lane in self._lanes:
            while lane:
                key = next(iter(lane))
                future = lane.pop(key)
                if not future.done():
                    future.set_result(None)  # the slot goes straight to the next waiter
                    return
        self._free += 1

    def promote(self, key: Hashable) -> None:
        """A background waiter of ``key`` moves to the foreground lane's end."""
        future = self._lanes[1].pop(key, None)
        if future is not None:
            self._lanes[0][key] = future


class RetryLater(Exception):
    """A failure the work has explained in its message (e.g. a missing permission): retried
    with the same backoff, logged as one ERROR line without a traceback."""


class WorkQueue:
    def __init__(
        self,
        work: Callable[[Hashable], Awaitable[None]],
        *,
        max_concurrent: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._work = work
        self._slots = _Slots(max_concurrent)
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._started: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._background: set[Hashable] = set()  # waiting in the background lane

    def trigger(self, key: Hashable, *, background: bool = False) -> None:
        """Ask for a pass over ``key`` soon; cheap and safe to call from any handler.
        ``background``: after every pass waiting in the foreground (a foreground trigger while
        it waits moves it there)."""
        task = self._tasks.get(key)
        if task is not None:
            if key in self._started:
                self._dirty.add(key)
            elif not background and key in self._background:
                self._background.discard(key)
                self._slots.promote(key)
            return
        if self._failures.get(key) and key in self._timers:
            return  # backing off: the retry serves this trigger, so failing passes stay bounded
        self._cancel_timer(key)
        loop = asyncio.get_running_loop()
        metrics.QUEUE_DEPTH.inc()
        if background:
            self._background.add(key)
        self._tasks[key] = loop.create_task(self._run(key, loop.time()))

    def trigger_after(self, key: Hashable, delay: float) -> None:
        """Ask for a pass over ``key`` in ``delay`` seconds (an earlier request stands)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, delay)
        current = self._timers.get(key)
        if current is not None and current[0] <= due:
            return
        self._cancel_timer(key)
        self._timers[key] = (due, loop.call_at(due, self._due, key))

    def _due(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.trigger(key)

    def _cancel_timer(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()

    async def _run(self, key: Hashable, queued_at: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                # (A pass asked for again while one ran is asked for because of news.)
                await self._slots.acquire(key, key in self._background)
                self._background.discard(key)
                try:
                    metrics.QUEUE_DEPTH.dec()
                    metrics.QUEUE_WAIT_SECONDS.observe(loop.time() - queued_at)
                    self._started.add(key)
                    self._dirty.discard(key)
                    try:
                        await self._work(key)
                    except asyncio.CancelledError:
                        raise
                    except Exception as error:  # noqa: BLE001 - every failure is retried
                        self._failed(key, error)
                        return
                    finally:
                        self._started.discard(key)
                    self._failures.pop(key, None)
                finally:
                    self._slots.release()
                if key not in self._dirty:
                    return
                self._dirty.discard(key)
                queued_at = loop.time()
                metrics.QUEUE_DEPTH.inc()
        finally:
            self._tasks.pop(key, None)
            self._background.discard(key)

    def _failed(self, key: Hashable, error: Exception) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(MAX_RETRY_DELAY, MIN_RETRY_DELAY * 2 ** (failures - 1))
        if isinstance(error, RetryLater):
            log.error(
                "reconcile of %s failed (attempt %d): %s; retrying in %.0f s",
                _describe(key),
                failures,
                error,
                delay,
            )
        else:
            log.error(
                "reconcile of %s failed (attempt %d); retrying in %.0f s",
                _describe(key),
                failures,
                delay,
                exc_info=error,
            )
        # A trigger that came during the failed pass is served by the retry, not at once.
        self._dirty.discard(key)
        self.trigger_after(key, delay)

    def forget(self, key: Hashable) -> None:
        """Drop pending retries and looks of a key whose object is gone."""
        self._cancel_timer(key)
        self._failures.pop(key, None)

    async def drain(self) -> None:
        """Wait for running and waiting passes (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)
