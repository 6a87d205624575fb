"""Whether this replica may run passes, when several replicas share a kopf peering object.

kopf keeps this replica's record in the peering object alive (and removes it on a clean stop),
but the operator's watches and timers are its own, not kopf's, so kopf's pausing does not reach
them. The controller therefore follows the same peering object, through the operator's one
list-watch loop, and pauses its passes by kopf's rule: a peer is
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
from .listwatch import ListWatch

log = logging.getLogger(__name__)

PEERING_GROUP = "kopf.dev/v1"


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


def peers_of(peering: Mapping[str, Any], received: dt.datetime) -> list[Peer]:
    """The peers a peering object's status lists (kopf writes ``{identity: {priority,
    lifetime, lastseen}}``); a record without ``lastseen`` counts as seen when ``received``, as
    in kopf."""
    peers = []
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


class Turn:
    """Judges this replica's turn from the peering object as last seen, again when a blocking
    peer's lifetime runs out, and tells ``on_change(working, why)`` whenever it changes."""

    def __init__(
        self,
        ref: PeeringRef,
        identity: str,
        priority: int,
        on_change: Callable[[bool, str], None],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.ref, self.identity, self.priority = ref, identity, priority
        self.on_change = on_change
        self.clock = clock
        self.working: bool | None = None
        self._peering: Mapping[str, Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def listed(self, _scope: str | None, objects: list[dict[str, Any]]) -> None:
        self.judge(objects[0] if objects else None)  # no object yet: no peers to yield to

    def event(self, kind: str, peering: dict[str, Any]) -> None:
        self.judge(None if kind == "DELETED" else peering)

    def judge(self, peering: Mapping[str, Any] | None) -> None:
        self._peering = peering
        self.stop()
        now = self.clock()
        blocking = blockers(peers_of(peering or {}, now), self.identity, self.priority, now)
        turn = not blocking
        if turn != self.working:
            self.working = turn
            ref = self.ref
            why = (
                f"no live peer in {ref.resource}/{ref.name} has priority {self.priority} or more"
                if turn
                else f"live peers with priority >= {self.priority}: "
                + ", ".join(f"{p.identity} ({p.priority})" for p in blocking)
            )
            self.on_change(turn, why)
        expiry = min((peer.deadline for peer in blocking), default=None)
        if expiry is not None:
            self._timer = asyncio.get_running_loop().call_later(
                _seconds_until(expiry, now), self.judge, self._peering
            )

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
    turn = Turn(ref, identity, priority, on_change, clock)
    # A LIST by name, not a GET: kopf's own rights on peerings are list, watch, patch.
    watch = ListWatch(
        kube,
        ref.resource,
        lambda _scope, query: ref.path(**query),
        [ref.namespace],
        on_list=turn.listed,
        on_event=turn.event,
        bookmarks=False,
    )
    try:
        await watch.run()
    finally:
        turn.stop()


def _seconds_until(when: dt.datetime, now: dt.datetime) -> float:
    return max(0.0, (when - now).total_seconds()) + 0.05
