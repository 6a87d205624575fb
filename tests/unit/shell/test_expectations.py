"""The operator's own writes count until the watch shows them, and not forever."""

from __future__ import annotations

import pytest

from tfjob_operator.core.observed import Observed, PodObservation
from tfjob_operator.shell.expectations import (
    CONFLICT_RECHECK_SECONDS,
    EXPECTATION_SECONDS,
    Expectations,
)

pytestmark = pytest.mark.timeout(10)

UID = "job-uid"


def pod(name: str, *, uid: str | None = None, deleting: bool = False) -> PodObservation:
    return PodObservation(
        name, None, 0, "Pending", uid=uid or name, owner_uid=UID, deleting=deleting
    )


def test_a_created_pod_counts_until_the_watch_shows_it() -> None:
    expected = Expectations(created={"job-worker-0": (100.0, pod("job-worker-0"))})
    observed, recheck = expected.merge(Observed(), "job", UID, now=101.0)
    assert [p.name for p in observed.pods] == ["job-worker-0"]
    assert recheck is None
    seen = Observed(pods=(pod("job-worker-0", uid="real"),))
    observed, _ = expected.merge(seen, "job", UID, now=102.0)
    assert [p.uid for p in observed.pods] == ["real"]
    assert expected.empty()


def test_a_create_the_watch_never_shows_is_forgotten_after_its_time() -> None:
    expected = Expectations(created={"job-worker-0": (100.0, pod("job-worker-0"))})
    observed, _ = expected.merge(Observed(), "job", UID, now=100.0 + EXPECTATION_SECONDS + 1)
    assert observed.pods == ()
    assert expected.empty()


def test_a_deleted_pod_counts_as_going_for_as_long_as_it_is_there() -> None:
    expected = Expectations(deleted={"u1": 100.0})
    seen = Observed(pods=(pod("job-worker-0", uid="u1"),))
    late = 100.0 + EXPECTATION_SECONDS + 50
    observed, _ = expected.merge(seen, "job", UID, now=late)
    assert [p.deleting for p in observed.pods] == [False]  # old, and not going: forgotten
    expected = Expectations(deleted={"u1": 100.0})
    going = Observed(pods=(pod("job-worker-0", uid="u1", deleting=True),))
    observed, _ = expected.merge(going, "job", UID, now=late)
    assert [p.deleting for p in observed.pods] == [True]
    assert "u1" in expected.deleted  # a long grace period: still the operator's own delete
    observed, _ = expected.merge(Observed(), "job", UID, now=late + 1)
    assert expected.empty()


def test_a_name_held_by_somebody_else_is_tried_again_after_the_recheck_time() -> None:
    expected = Expectations(conflicts={("Pod", "job-worker-0"): 100.0})
    observed, recheck = expected.merge(Observed(), "job", UID, now=104.0)
    assert [p.uid for p in observed.pods] == ["conflict/job-worker-0"]
    assert recheck == pytest.approx(CONFLICT_RECHECK_SECONDS - 4)
    observed, recheck = expected.merge(Observed(), "job", UID, now=100.0 + CONFLICT_RECHECK_SECONDS)
    assert (observed.pods, recheck) == ((), None)
    assert expected.empty()
