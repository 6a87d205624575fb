"""The pure core under generated specs (hypothesis): valid and invalid jobs of both forms go
through compile, build and decide, which either make children or refuse naming the field, and
never raise. A second pass over what the first made creates nothing (idempotence).

tests/integration/test_fuzz_dry_run.py sends a sample of what these passes build to the real API
server as a server-side dry run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.support.specs import DNS_LABEL, NOW, SETTINGS, UID, first_pass, settled, specs
from tfjob_operator.core.compile import compile_job
from tfjob_operator.core.decide import decide

EXAMPLES = int(os.environ.get("TFJOB_FUZZ_EXAMPLES", "10000"))


@pytest.mark.timeout(600)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_compile_build_decide_make_children_or_name_the_field_and_never_raise(
    spec: dict[str, Any],
) -> None:
    body, decision = first_pass(spec)
    for child in decision.create:
        name = child["metadata"]["name"]
        if child["kind"] in ("Pod", "Service"):
            assert DNS_LABEL.match(name), name
        assert child["metadata"]["ownerReferences"][0]["uid"] == UID
    # Idempotent: with what the first pass made in place, a second pass makes nothing more.
    if decision.create:
        again_body, observed = settled(body, decision)
        again = decide(again_body, compile_job(spec, SETTINGS), observed, SETTINGS, NOW)
        assert again.create == [], [(o["kind"], o["metadata"]["name"]) for o in again.create]
