"""The benchmark at its smallest: every contestant runs, every job ends right, reports exist.

It asserts that the run worked, never a timing: figures on a shared 2-core machine are the
benchmark's output, not a test's pass mark.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tfjob_bench import report
from tfjob_bench.runner import CONTESTANTS, Bench, BenchConfig

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1500)  # includes building Kubeflow's training-operator the first time
def test_every_contestant_runs_and_every_job_ends_right(tmp_path: Path) -> None:
    config = BenchConfig(
        jobs=3,
        pods_per_job=2,
        nodes=2,
        fail_every=3,  # the third job fails
        concurrency=8,
        rounds=2,
        out=tmp_path / "bench",
        log=lambda message: None,
    )
    bench = Bench(config)
    rounds = bench.run()
    markdown, png = report.write(config, rounds, bench.environment)

    # Interleaved: every contestant once a round, each round's writes counted apart.
    assert [list(r) for r in rounds] == [list(CONTESTANTS)] * 2
    for number, this_round in enumerate(rounds, 1):
        for name, result in this_round.items():
            tag = f"{name} round {number}"
            assert result.round == number, tag
            assert result.error is None, f"{tag}: {result.error}"
            assert result.p1_seconds is not None, tag
            assert result.pods_created == 6, tag
            assert result.writes["by_verb_resource"].get("create pods") == 6, (tag, result.writes)
        for name in CONTESTANTS[1:]:
            result = this_round[name]
            assert result.missing_terminal == [], name
            assert result.wrong_terminal == [], name
            assert result.jobs_with_wrong_pod_count == [], name
            assert (len(result.p2_succeeded), len(result.p2_failed)) == (2, 1), name
            assert result.rss_peak_mb is not None, name
            assert result.cpu_seconds_total is not None, name
    text = markdown.read_text()
    for name in CONTESTANTS:
        assert f"| {name} | 2/2 |" in text
        assert f"### {name}, round 2" in text
    assert png.stat().st_size > 0
