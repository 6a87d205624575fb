"""Whether this replica may run passes, when several replicas share a kopf peering object.

kopf pauses its own watches while a live peer in the peering object has a higher (or the same)
priority. The controller's pod and service informers and its timers are its own, not kopf's, so
they would go on running passes in a paused replica beside the working one. The controller
therefore follows the same peering object and pauses its passes by the same rule: a peer is
live until its ``lastseen`` plus its ``lifetime``, and a killed replica's record blocks the
others until then (which is the failover time after a SIGKILL; a replica that stops cleanly
removes its record at once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .kube import Kube

log = logging.getLogger(__name__)

PEERING_GROUP = "kopf.dev/v1"
WATCH_SECONDS = 300
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Peer:
    identity: str
    priority: int
    deadline: dt.datetime


def own_identity() -> str:
    """The name this replica goes by in the peering object: its pod's name (the chart sets
    POD_ID), else host, pid and a random part, so that a restarted process is a new peer."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def peers_of(peering: Mapping[str, Any]) -> list[Peer]:
    """The peers a peering object's status lists (kopf writes ``{identity: {priority,
    lifetime, lastseen}}``); a record without ``lastseen`` counts as just seen, as in kopf."""
    peers = []
    received = dt.datetime.now(dt.UTC)
    for identity, record in (peering.get("status") or {}).items():
        if not isinstance(record, Mapping):
            continue
        lastseen = record.get("lastseen")
        seen = dt.datetime.fromisoformat(lastseen) if lastseen else received
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=dt.UTC)
        lifetime = dt.timedelta(seconds=int(record.get("lifetime", 60)))
        peers.append(Peer(str(identity), int(record.get("priority", 0)), seen + lifetime))
    return peers


def blockers(peers: list[Peer], identity: str, priority: int, now: dt.datetime) -> list[Peer]:
    """The live peers other than this one with a priority as high or higher: while there is
    one, this replica pauses (equal priorities pause each other, as kopf does)."""
    return [
        peer
        for peer in peers
        if peer.identity != identity and peer.deadline > now and peer.priority >= priority
    ]


@dataclass(frozen=True)
class PeeringSetup:
    """How this replica takes part in a peering (from `tfjob-operator run`'s flags)."""

    name: str
    identity: str
    priority: int
    lifetime: int


@dataclass(frozen=True)
class PeeringRef:
    """The peering object one scope's replicas share: cluster-wide (a ClusterKopfPeering) or
    in a namespace (a KopfPeering), as kopf chooses for an operator's scope."""

    name: str
    namespace: str | None = None

    @property
    def resource(self) -> str:
        return "kopfpeerings" if self.namespace else "clusterkopfpeerings"

    def path(self, **query: str) -> str:
        """The list (or, with ``watch``, the watch) of this one object."""
        base = f"/apis/{PEERING_GROUP}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        parts = urllib.parse.urlencode({"fieldSelector": f"metadata.name={self.name}", **query})
        return f"{base}/{self.resource}?{parts}"


async def follow(
    kube: Kube,
    ref: PeeringRef,
    identity: str,
    priority: int,
    on_change: Callable[[bool, str], None],
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> None:
    """Tell ``on_change(working, why)`` whenever this replica's turn changes, until cancelled:
    on every change of the peering object, and when a blocking peer's lifetime runs out."""
    delay = 1.0
    working: bool | None = None

    def judge(peering: Mapping[str, Any] | None) -> dt.datetime | None:
        """Report the turn; returns when it would change by time alone."""
        nonlocal working
        now = clock()
        blocking = blockers(peers_of(peering or {}), identity, priority, now)
        turn = not blocking
        if turn != working:
            working = turn
            why = (
                f"no live peer in {ref.resource}/{ref.name} has priority {priority} or more"
                if turn
                else f"live peers with priority >= {priority}: "
                + ", ".join(f"{p.identity} ({p.priority})" for p in blocking)
            )
            on_change(turn, why)
        return min((peer.deadline for peer in blocking), default=None)

    while True:
        try:
            # A LIST by name, not a GET: kopf's own rights on peerings are list, watch, patch.
            found = await kube.list_page(
                ref.path(limit="1"), resource=ref.resource, namespace=ref.namespace
            )
            items = found.get("items") or []
            version = str((found.get("metadata") or {}).get("resourceVersion") or "")
            expiry = judge(items[0] if items else None)  # no object yet: no peers to yield to
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(WATCH_SECONDS + 30) as limit:
                if expiry is not None:
                    limit.reschedule(loop.time() + _seconds_until(expiry, clock()))
                async for event in kube.watch(
                    ref.path(
                        watch="1",
                        resourceVersion=version,
                        timeoutSeconds=str(WATCH_SECONDS),
                    ),
                    resource=ref.resource,
                    namespace=ref.namespace,
                    timeout=WATCH_SECONDS + 30,
                ):
                    kind = event.get("type")
                    if kind == "ERROR":
                        break  # e.g. 410: read the object again
                    expiry = judge(None if kind == "DELETED" else event.get("object"))
                    limit.reschedule(
                        loop.time()
                        + (
                            WATCH_SECONDS + 30
                            if expiry is None
                            else _seconds_until(expiry, clock())
                        )
                    )
            delay = 1.0
        except TimeoutError:
            delay = 1.0  # a blocker's lifetime ran out (or the watch ended): read again
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a broken watch is resumed, not lost
            log.warning("following peering %s failed (%s); again in %.0f s", ref.name, error, delay)
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, delay * 2)


def _seconds_until(when: dt.datetime, now: dt.datetime) -> float:
    return max(0.0, (when - now).total_seconds()) + 0.05
