"""Run the reconcile of each job one at a time, coalescing triggers and retrying with backoff.

kopf calls handlers per watched object, so a job's own events and its pods' events would run
reconciles of the same job concurrently. Here a trigger for a job that is already being
reconciled only marks it dirty: the running pass is followed by exactly one more. A pass that
raises is retried after a growing delay (1 s doubling to 60 s), so a failing API never turns
into a retry storm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)

MIN_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 60.0


def _describe(key: Hashable) -> str:
    """`namespace/name` for the (namespace, name) keys jobs use."""
    if isinstance(key, tuple) and all(isinstance(part, str) for part in key):
        return "/".join(key)
    return str(key)


class RetryLater(Exception):
    """A failure the work has explained in its message (e.g. a missing permission): retried
    with the same backoff, logged as one ERROR line without a traceback."""


class WorkQueue:
    def __init__(self, work: Callable[[Hashable], Awaitable[None]]) -> None:
        self._work = work
        self._running: dict[Hashable, asyncio.Task[None]] = {}
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._retries: dict[Hashable, asyncio.TimerHandle] = {}

    def trigger(self, key: Hashable) -> None:
        """Ask for a pass over ``key`` soon; cheap and safe to call from any handler."""
        if key in self._running:
            self._dirty.add(key)
            return
        retry = self._retries.pop(key, None)
        if retry is not None:
            retry.cancel()
        self._running[key] = asyncio.get_running_loop().create_task(self._run(key))

    async def _run(self, key: Hashable) -> None:
        try:
            while True:
                self._dirty.discard(key)
                try:
                    await self._work(key)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
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
                        log.exception(
                            "reconcile of %s failed (attempt %d); retrying in %.0f s",
                            _describe(key),
                            failures,
                            delay,
                        )
                    self._schedule_retry(key, delay)
                    return
                self._failures.pop(key, None)
                if key not in self._dirty:
                    return
        finally:
            self._running.pop(key, None)

    def _schedule_retry(self, key: Hashable, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._retries[key] = loop.call_later(delay, self._retry, key)

    def _retry(self, key: Hashable) -> None:
        self._retries.pop(key, None)
        self.trigger(key)

    def forget(self, key: Hashable) -> None:
        """Drop pending retries of a key whose object is gone."""
        retry = self._retries.pop(key, None)
        if retry is not None:
            retry.cancel()
        self._failures.pop(key, None)

    async def drain(self) -> None:
        """Wait for running passes (tests and shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)
