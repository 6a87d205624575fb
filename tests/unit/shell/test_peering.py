"""Which replica of a peering runs passes: kopf's rule, read from its peering object."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tfjob_operator.shell.peering import PeeringRef, Turn, blockers, peers_of

pytestmark = pytest.mark.timeout(10)

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def record(priority: int, seconds_ago: float, lifetime: int = 15) -> dict[str, object]:
    seen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def blocking(status: dict[str, object], me: str = "me", priority: int = 10) -> list[str]:
    return [p.identity for p in blockers(peers_of({"status": status}, NOW), me, priority, NOW)]


def test_a_live_peer_with_a_higher_priority_blocks_and_a_lower_one_does_not() -> None:
    assert blocking({"me": record(10, 0), "high": record(20, 3)}) == ["high"]
    assert blocking({"me": record(10, 0), "low": record(5, 3)}) == []


def test_equal_priorities_block_each_other_as_in_kopf() -> None:
    assert blocking({"me": record(10, 0), "twin": record(10, 1)}) == ["twin"]


def test_a_killed_peer_blocks_until_its_lifetime_runs_out_and_not_after() -> None:
    assert blocking({"killed": record(20, 14.9)}) == ["killed"]
    assert blocking({"killed": record(20, 15.0)}) == []
    (peer,) = peers_of({"status": {"killed": record(20, 10)}}, NOW)
    assert peer.deadline == NOW + dt.timedelta(seconds=5)


def test_own_record_never_blocks_and_an_empty_or_missing_status_has_no_peers() -> None:
    assert blocking({"me": record(1, 0)}, priority=1) == []
    assert peers_of({}, NOW) == []
    assert peers_of({"status": None}, NOW) == []


def test_kopfs_lastseen_format_parses() -> None:
    # kopf writes datetime.isoformat() of an aware UTC time.
    (peer,) = peers_of(
        {
            "status": {
                "p": {"priority": 0, "lifetime": 60, "lastseen": "2026-11-30T12:00:00.123456+00:00"}
            }
        },
        NOW,
    )
    assert peer.deadline == dt.datetime(2026, 11, 30, 12, 1, 0, 123456, tzinfo=dt.UTC)


def test_cluster_wide_and_namespaced_peerings_have_their_own_paths() -> None:
    assert PeeringRef("ops").path() == (
        "/apis/kopf.dev/v1/clusterkopfpeerings?fieldSelector=metadata.name%3Dops"
    )
    assert PeeringRef("ops", "ml").path(watch="1") == (
        "/apis/kopf.dev/v1/namespaces/ml/kopfpeerings?fieldSelector=metadata.name%3Dops&watch=1"
    )


@pytest.mark.asyncio
async def test_the_turn_comes_when_a_blocking_peers_lifetime_runs_out_without_any_event() -> None:
    """A SIGKILLed replica never removes its record: its lifetime running out is the only
    sign, and no watch event comes with it."""
    started = dt.datetime.now(dt.UTC)
    told: list[bool] = []
    turn = Turn(PeeringRef("ops"), "me", 10, lambda working, _why: told.append(working), clock)
    killed = {"priority": 20, "lifetime": 1, "lastseen": (started - dt.timedelta(seconds=0.7))}
    killed["lastseen"] = killed["lastseen"].isoformat()  # type: ignore[attr-defined]
    turn.listed(None, [{"status": {"killed": killed}}])
    assert told == [False]
    await asyncio.sleep(0.6)
    assert told == [False, True]
    turn.stop()


def clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
