"""The Events waiting to be posted: bounded per job, coalesced, sent by a few senders.

A pass hands its events over and goes on; a thousand jobs starting at once, or an API server
that slows Event writes down (EventRateLimit answers 429, a POST may wait a minute), must not
pile up a task and a whole job body per pass. So each job has one entry: a small reference to
it and at most PER_JOB events (an event the same as one waiting is not queued twice; past the
bound the oldest goes, counted in tfjob_operator_events_dropped). A few senders post the
entries in the order jobs came, each job's events in order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tfjob_operator.core.events import JobEvent

from . import metrics

log = logging.getLogger(__name__)

JobKey = tuple[str, str, str]  # namespace, name, uid
SENDERS = 4
PER_JOB = 16


def reference(job: dict[str, Any]) -> dict[str, Any]:
    """What an Event needs of its job: its identity, not its body."""
    metadata = job["metadata"]
    return {
        "apiVersion": job["apiVersion"],
        "kind": job["kind"],
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion")
            if key in metadata
        },
    }


class Outbox:
    def __init__(
        self,
        post: Callable[[dict[str, Any], JobEvent], Awaitable[None]],
        *,
        senders: int = SENDERS,
        per_job: int = PER_JOB,
    ) -> None:
        self._post = post
        self._senders = senders
        self._per_job = per_job
        self._waiting: dict[JobKey, tuple[dict[str, Any], collections.deque[JobEvent]]] = {}
        self._order: collections.deque[JobKey] = collections.deque()
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Events waiting."""
        return sum(len(events) for _, events in self._waiting.values())

    def add(self, job: dict[str, Any], events: list[JobEvent]) -> None:
        """Queue ``events`` of ``job`` (a running event loop sends them)."""
        metadata = job["metadata"]
        key = (metadata["namespace"], metadata["name"], metadata["uid"])
        entry = self._waiting.get(key)
        if entry is None:
            self._order.append(key)
            waiting: collections.deque[JobEvent] = collections.deque()
        else:
            waiting = entry[1]
        self._waiting[key] = (reference(job), waiting)  # the job's newest version
        for event in events:
            if event in waiting:
                continue
            if len(waiting) == self._per_job:
                waiting.popleft()
                metrics.EVENTS_DROPPED.inc()
            waiting.append(event)
        while len(self._running) < self._senders and len(self._running) < len(self._order):
            task = asyncio.get_running_loop().create_task(self._send())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def drain(self) -> None:
        """Wait until every event queued is sent (or given up on)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _send(self) -> None:
        while self._order:
            key = self._order.popleft()
            entry = self._waiting.pop(key, None)
            if entry is None:
                continue
            job, events = entry
            for event in events:
                try:
                    await self._post(job, event)
                except Exception as error:  # noqa: BLE001 - the log says it; the job goes on
                    log.warning(
                        "could not post event %s for %s/%s: %s", event.reason, *key[:2], error
                    )
