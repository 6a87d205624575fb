"""The run's results: a markdown table (and JSON) side by side, and the P2 latency plot."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .history import EMPTY, LIVE, RESTARTED, HistoryRun
from .rounds import Figure, Rounds, names, ratio_to_limit, spread
from .runner import MIN_STATUS_WRITES, BenchConfig, ContestantResult, percentile

MARKDOWN = "results.md"
PLOT = "p2-latency.png"
JSON = "results.json"


def _seconds(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _spread(values: list[float]) -> str:
    if not values:
        return "—"
    return " / ".join(f"{percentile(values, p):.3f}" for p in (50, 99, 100))


def minimum_writes(config: BenchConfig, name: str) -> int:
    """Per job: its pods, one Service, its PodGroup where the cluster gang-schedules, and for
    an operator one status write per condition."""
    children = config.pods_per_job + 1 + (1 if config.pod_groups else 0)
    return children + (0 if name == "limit" else MIN_STATUS_WRITES)


def _p(values: list[float], p: float) -> float | None:
    return percentile(values, p) if values else None


def _writes(config: BenchConfig, key: str) -> Callable[[ContestantResult], float | None]:
    def per_job(r: ContestantResult) -> float | None:
        value = r.writes.get(key)
        return None if value is None else value / config.jobs

    return per_job


def figures(config: BenchConfig, name: str) -> dict[str, tuple[Figure, int]]:
    """The main table's figures of contestant ``name``: title -> (figure, digits)."""
    p1: Callable[[ContestantResult], float | None] = lambda r: r.p1_seconds  # noqa: E731
    p1_audit: Callable[[ContestantResult], float | None] = lambda r: r.p1_audit_seconds  # noqa: E731
    plain = _writes(config, "without_events")
    operator = name != "limit"
    table: dict[str, tuple[Figure, int]] = {
        "P1: all pods seen (s)": (lambda r, _: r.p1_seconds, 2),
        "ratio to limit": (ratio_to_limit(p1), 2),
        "P1 on the server's clock (s)": (lambda r, _: r.p1_audit_seconds, 2),
        "ratio to limit (server's clock)": (ratio_to_limit(p1_audit), 2),
    }
    if operator:
        table |= {
            "P2 Succeeded p50 (s)": (lambda r, _: _p(r.p2_succeeded, 50), 3),
            "P2 Succeeded p99 (s)": (lambda r, _: _p(r.p2_succeeded, 99), 3),
            "P2 Failed p50 (s)": (lambda r, _: _p(r.p2_failed, 50), 3),
            "P2 p50, server's clock (s)": (lambda r, _: _p(r.p2_audit, 50), 3),
            "P2 p99, server's clock (s)": (lambda r, _: _p(r.p2_audit, 99), 3),
        }
    minimum = minimum_writes(config, name)
    table |= {
        "writes per job": (lambda r, _: _writes(config, "total")(r), 2),
        "without Events": (lambda r, _: plain(r), 2),
        "writes / minimum": (lambda r, _: v / minimum if (v := plain(r)) else None, 2),
    }
    if operator:
        table |= {
            "peak RSS (MB)": (lambda r, _: r.rss_peak_mb, 0),
            "CPU s, t0→end": (lambda r, _: r.cpu_seconds_measured, 1),
        }
    return table


def _columns(config: BenchConfig, rounds: Rounds) -> list[str]:
    columns: list[str] = []
    for name in names(rounds):
        columns.extend(t for t in figures(config, name) if t not in columns)
    return columns


def _right(rounds: Rounds, name: str) -> str:
    """Jobs that ended right over every round: ``540/540 + 60/60``."""
    results = [r[name] for r in rounds if name in r]
    if name == "limit":
        return "—"
    succeeded = sum(len(r.p2_succeeded) for r in results)
    failed = sum(len(r.p2_failed) for r in results)
    expected_s = sum(r.expected_succeeded for r in results)
    expected_f = sum(r.expected_failed for r in results)
    wrong = sum(
        len(r.wrong_terminal) + len(r.missing_terminal) + len(r.jobs_with_wrong_pod_count)
        for r in results
    )
    return f"{succeeded}/{expected_s} + {failed}/{expected_f}" + (
        f", {wrong} wrong" if wrong else ""
    )


def main_table(config: BenchConfig, rounds: Rounds) -> list[str]:
    """A row per contestant: each figure's median over the rounds, [lowest, highest] after it."""
    columns = _columns(config, rounds)
    rows = [
        "| contestant | rounds ok | "
        + " | ".join(columns)
        + " | right terminal condition, all rounds (S + F) | ERROR lines, t0→end |",
        "|" + "---|" * (len(columns) + 4),
    ]
    for name in names(rounds):
        results = [r[name] for r in rounds if name in r]
        ok = sum(1 for r in results if not r.error and r.jobs_ok)
        own = figures(config, name)
        cells = []
        for column in columns:
            if column not in own:
                cells.append("—")
                continue
            figure, digits = own[column]
            values = spread(rounds, name, figure)
            cells.append(values.format(digits) if values else "—")
        errors = [r.log_errors for r in results if r.log_errors is not None]
        rows.append(
            f"| {name} | {ok}/{len(results)} | "
            + " | ".join(cells)
            + f" | {_right(rounds, name)} | {sum(errors) if errors else '—'} |"
        )
    return rows


def rounds_table(config: BenchConfig, rounds: Rounds) -> list[str]:
    """Every round of every contestant, in run order."""
    rows = [
        "| round | contestant | P1 (s) | ratio | P1, server's clock (s) | ratio | "
        "P2 Succeeded p50 / p99 / max (s) | writes per job without Events | peak RSS (MB) | "
        "failed |",
        "|" + "---|" * 10,
    ]
    for number, this_round in enumerate(rounds, 1):
        limit = this_round.get("limit")
        for name, r in this_round.items():
            ratio = ratio_to_limit(lambda x: x.p1_seconds)(r, limit)
            audit_ratio = ratio_to_limit(lambda x: x.p1_audit_seconds)(r, limit)
            plain = r.writes.get("without_events")
            rows.append(
                f"| {number} | {name} | {_seconds(r.p1_seconds)} | {_seconds(ratio)} "
                f"| {_seconds(r.p1_audit_seconds)} | {_seconds(audit_ratio)} "
                f"| {_spread(r.p2_succeeded) if name != 'limit' else '—'} "
                f"| {_seconds(plain / config.jobs if plain is not None else None)} "
                f"| {_seconds(r.rss_peak_mb, 0)} "
                f"| {r.error or ('jobs not ended right' if not r.jobs_ok else '')} |"
            )
    return rows


def writes_table(config: BenchConfig, rounds: Rounds) -> list[str]:
    """Writes per job by verb and resource: the median over the rounds."""
    contestants = names(rounds)
    keys = sorted(
        {
            k
            for this_round in rounds
            for r in this_round.values()
            for k in r.writes.get("by_verb_resource", {})
        }
    )
    rows = [
        "| verb resource | " + " | ".join(contestants) + " |",
        "|---|" + "---|" * len(contestants),
    ]
    for key in keys:
        cells = []
        for name in contestants:
            values = spread(
                rounds,
                name,
                lambda r, _, key=key: (
                    r.writes.get("by_verb_resource", {}).get(key, 0) / config.jobs
                ),
            )
            cells.append(f"{values.median:.2f}" if values and values.median else "")
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return rows


def render(config: BenchConfig, rounds: Rounds, environment: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {config.jobs} jobs x {config.pods_per_job} pods, {len(rounds)} round(s)",
        "",
        "One control plane for all; only the contestant under test runs; a fresh namespace and a "
        "fresh operator process each round; the contestants take turns in the same order every "
        "round; the same driver (concurrency "
        f"{config.concurrency}) submits every contestant's jobs; every job has "
        "`runPolicy.cleanPodPolicy: None`, so no contestant deletes pods in the finish phase.",
        "",
        "Each cell: the median over the rounds, then [the lowest, the highest] round. A ratio to "
        "the limit is taken within each round, then summarised.",
        "",
        *main_table(config, rounds),
        "",
        "- P1: from the driver's first job create to the observer's watch having seen every "
        "pod, for every contestant. The limit creates each job's children as soon as the "
        "driver's create of that job returns (no watch in between). Audit column: the first "
        "job create received to the last pod create completed, on the API server's clock.",
        "- P2: the observer sees worker 0 Succeeded (Failed) -> it sees the job's Succeeded "
        "(Failed) condition True. On the server's clock: the last write of worker 0's pod "
        "status (kwok ending it) -> the operator's next status write of the job, completed; "
        "the observer's watches are not in it. Every "
        f"{config.fail_every}th job's worker 0 exits 1.",
        f"- Minimum writes per job: {config.pods_per_job} pods + 1 Service + "
        + (
            "1 PodGroup (the cluster gang-schedules, and the limit creates it too) + "
            if config.pod_groups
            else ""
        )
        + f"{MIN_STATUS_WRITES} status writes (Created, Running, Succeeded or Failed) for an "
        "operator; the children alone for the limit. Kubeflow makes one Service per pod and "
        "no PodGroup by design; the minimum is the same bar for all.",
        "- Writes are the contestant's own identity's, from the audit log between its start "
        "and end markers.",
        "",
        "## Every round",
        "",
        *rounds_table(config, rounds),
        "",
        "## Writes per job by verb and resource (contestant's identity, median of the rounds)",
        "",
        *writes_table(config, rounds),
        "",
        "## Per contestant and round",
        "",
    ]
    for r in (r for this_round in rounds for r in this_round.values()):
        lines.append(f"### {r.name}, round {r.round}")
        lines.append("")
        if r.error:
            lines.append(f"- **failed**: {r.error}")
        if r.submit_seconds is not None:
            lines.append(f"- submit (first wave): {r.submit_seconds:.2f} s")
        if r.children_seconds is not None:
            lines.append(
                f"- its children alone (first child create to last): {r.children_seconds:.2f} s"
            )
        if r.client_cpu_seconds is not None:
            lines.append(
                f"- the limit's client ({config.limit_client}) used "
                f"{r.client_cpu_seconds:.2f} CPU s while creating"
            )
        if r.running_seconds is not None:
            lines.append(f"- every pod Running at {r.running_seconds:.2f} s after t0")
        for label, phase in (
            ("create phase", r.writes_create_phase),
            ("finish phase", r.writes_finish_phase),
        ):
            if phase:
                lines.append(f"- writes, {label}: {phase.get('by_verb_resource')}")
        if r.writes.get("errors"):
            lines.append(f"- error responses: {r.writes['errors']}")
        if r.writes.get("induced"):
            lines.append(f"- induced writes (others, top 12): {r.writes['induced']}")
        if r.wrong_terminal:
            lines.append(f"- wrong terminal condition: {r.wrong_terminal[:10]}")
        if r.missing_terminal:
            lines.append(f"- no terminal condition: {len(r.missing_terminal)} jobs")
        if r.jobs_with_wrong_pod_count:
            lines.append(f"- jobs without exactly their pods: {r.jobs_with_wrong_pod_count[:10]}")
        if r.log_error_kinds:
            lines.append("- ERROR lines from t0 to the end, by kind:")
            lines.extend(f"  - {n} x `{kind}`" for kind, n in r.log_error_kinds.items())
        warnings = getattr(r, "log_warning_kinds", None)
        if warnings:
            lines.append("- WARNING lines from t0 to the end, by kind (top 5):")
            lines.extend(f"  - {n} x `{kind}`" for kind, n in warnings.items())
        if r.metrics:
            lines.append(f"- its metrics: {r.metrics}")
        lines.extend(f"- note: {n}" for n in r.notes)
        lines.append("")
    lines += [
        "## Caveats",
        "",
        "- Every core of the machine is shared by the control plane, kwok, the observer and the "
        "contestant: one round moves by tens of percent (the limit most: 1.6 to 4.6 s for 200 x 4 "
        "on one machine). Read the medians and the spread; a gap inside the spread is noise. "
        "Rounds run one after another on one cluster, so etcd grows by each round's history.",
        "- P1 ends when the observer has seen the last pod; under a burst its watch can trail the "
        "server (the server's-clock column, from the audit log, does not).",
        "- Kubeflow makes one Service per pod and has a 611 kB CRD schema; neither is corrected "
        "for. Its log level is debug as shipped and info when tuned.",
        "- Writes are counted at the audit log's Metadata level (reads and Leases not logged), the "
        "same audit cost for every contestant.",
        "",
        *ending(environment),
    ]
    return "\n".join(lines)


def ending(environment: dict[str, Any]) -> list[str]:
    """The environment, and the plot under it."""
    return [
        "## Environment",
        "",
        *(f"- {k}: {v}" for k, v in environment.items()),
        "",
        f"![P2 latency]({PLOT})",
        "",
    ]


def plot(rounds: Rounds, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 6.5), dpi=110)
    colours = {"ours": "#1f77b4", "kubeflow-shipped": "#d62728", "kubeflow-tuned": "#2ca02c"}
    drawn = False
    many = len(rounds) > 1
    for r in (r for this_round in rounds for r in this_round.values()):
        name = r.name
        for values, style, outcome in (
            (r.p2_succeeded, "-", "Succeeded"),
            (r.p2_failed, "--", "Failed"),
        ):
            if not values:
                continue
            # Two watches (pods, jobs) may deliver out of order by a hair: a value at or below
            # zero is drawn at 1 ms, the left edge of the log axis.
            ordered = sorted(max(v, 1e-3) for v in values)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axis.step(
                [ordered[0], *ordered],
                [0.0, *fractions],
                where="post",
                linestyle=style,
                color=colours.get(name),
                alpha=0.45 + 0.55 / r.round if many else 1.0,
                label=f"{name}{f' r{r.round}' if many else ''}, {outcome} "
                f"(n={len(ordered)}, p50 {percentile(values, 50):.3f} s)",
            )
            drawn = True
    axis.set_xscale("log")
    axis.set_xlabel(
        "worker 0 ended → job condition True, as seen by the observer (s, log scale; ≤1 ms at 1 ms)"
    )
    axis.set_ylabel("fraction of jobs")
    axis.set_ylim(0, 1.02)
    axis.grid(True, which="both", alpha=0.3)
    axis.set_title("P2: pod that decides → job condition (CDF)" + (", every round" if many else ""))
    if drawn:
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8)
    else:
        axis.text(0.5, 0.5, "no P2 samples", transform=axis.transAxes, ha="center")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _as_dicts(rounds: Rounds) -> list[dict[str, Any]]:
    return [{n: dataclasses.asdict(r) for n, r in this_round.items()} for this_round in rounds]


def _files(
    config: BenchConfig, text: str, rounds: Rounds, saved: dict[str, Any]
) -> tuple[Path, Path]:
    """The report, the plot of ``rounds`` and the JSON of ``saved``, under config.out."""
    config.out.mkdir(parents=True, exist_ok=True)
    markdown = config.out / MARKDOWN
    png = config.out / PLOT
    markdown.write_text(text)
    plot(rounds, png)
    (config.out / JSON).write_text(json.dumps(saved, indent=2, default=str))
    return markdown, png


def write(config: BenchConfig, rounds: Rounds, environment: dict[str, Any]) -> tuple[Path, Path]:
    text = render(config, rounds, environment)
    return _files(config, text, rounds, {"environment": environment, "rounds": _as_dicts(rounds)})


# ----- the history benchmark ---------------------------------------------------------------
def _median(rounds: Rounds, name: str, figure: Figure, digits: int = 2) -> str:
    values = spread(rounds, name, figure)
    return values.format(digits) if values else "—"


def history_tables(config: BenchConfig, run: HistoryRun) -> list[str]:
    """The history, each phase's figures side by side, the ratios to the empty cluster, and
    each restart."""
    h = run.history
    empty = run.phases.get(EMPTY, [])
    phases = [
        (EMPTY, "empty cluster", empty),
        (LIVE, "with history, the operator that made it", run.phases.get(LIVE, [])),
        (RESTARTED, "with history, a restarted operator", run.phases.get(RESTARTED, [])),
    ]
    lines = [
        "| history | jobs | Succeeded / Failed | pods left | Services left | made in (s) "
        "| peak RSS of the operator that made it (MB) | then the cluster quiet after (s) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {h.namespace} | {h.jobs} x {h.pods_per_job} pods | {h.succeeded} / {h.failed} "
        f"| {h.pods_left} | {h.services_left} | {_seconds(h.seconds, 0)} "
        f"| {_seconds(h.operator_rss_mb, 0)} | {_seconds(h.quiet_seconds, 0)} |",
        "",
    ]
    if h.error:
        lines += [f"**The history failed**: {h.error}", ""]
    p50: Figure = lambda r, _: _p(r.p2_succeeded, 50)  # noqa: E731
    p99: Figure = lambda r, _: _p(r.p2_succeeded, 99)  # noqa: E731
    plain = _writes(config, "without_events")
    columns: list[tuple[str, Figure, int]] = [
        ("P1 (s)", lambda r, _: r.p1_seconds, 2),
        ("ratio to limit", ratio_to_limit(lambda r: r.p1_seconds), 2),
        ("P1, server's clock (s)", lambda r, _: r.p1_audit_seconds, 2),
        ("ratio (server's clock)", ratio_to_limit(lambda r: r.p1_audit_seconds), 2),
        ("P2 Succeeded p50 (s)", p50, 3),
        ("P2 Succeeded p99 (s)", p99, 3),
        ("P2 p50, server's clock (s)", lambda r, _: _p(r.p2_audit, 50), 3),
        ("P2 p99, server's clock (s)", lambda r, _: _p(r.p2_audit, 99), 3),
        ("writes per job without Events", lambda r, _: plain(r), 2),
        ("peak RSS (MB)", lambda r, _: r.rss_peak_mb, 0),
    ]
    lines += [
        "| ours | rounds | " + " | ".join(title for title, _, _ in columns) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for _, title, rounds in phases:
        cells = [_median(rounds, "ours", figure, digits) for _, figure, digits in columns]
        lines.append(f"| {title} | {len(rounds)} | " + " | ".join(cells) + " |")
    for _, title, rounds in phases[1:]:
        cells = []
        for column, figure, _digits in columns:
            if column.startswith("ratio"):
                cells.append("—")  # a ratio of ratios says nothing more
                continue
            mine, base = spread(rounds, "ours", figure), spread(empty, "ours", figure)
            cells.append(
                f"{mine.median / base.median:.2f}" if mine and base and base.median else "—"
            )
        lines.append(f"| {title} / empty | | " + " | ".join(cells) + " |")
    restarted = [r["ours"] for r in run.phases.get(RESTARTED, []) if "ours" in r]
    lines += [
        "",
        "| restarted operator, round | launch → a new job's pods seen (s) "
        "| launch → every finished job passed, none waiting (s) "
        "| its writes in the history's namespace, launch → round's end | peak RSS (MB) |",
        "|---|---|---|---|---|",
    ]
    live = [r["ours"] for r in run.phases.get(LIVE, []) if "ours" in r]
    for r in live:
        lines.append(
            f"| live {r.round} (the operator that made it) | — | — "
            f"| {_history_writes(r)} "
            f"| {_seconds(r.rss_peak_mb, 0)} |"
        )
    for r in restarted:
        lines.append(
            f"| {r.round} | {_seconds(r.ready_seconds)} | {_seconds(r.settled_seconds)} "
            f"| {_history_writes(r)} "
            f"| {_seconds(r.rss_peak_mb, 0)} |"
        )
    return lines


def _history_writes(r: ContestantResult) -> str:
    if not r.history_writes:
        return "—"
    return f"{r.history_writes['total']} {r.history_writes.get('by_verb_resource') or ''}".strip()


def render_history(config: BenchConfig, run: HistoryRun, environment: dict[str, Any]) -> str:
    rounds = [r for phase in run.phases.values() for r in phase]
    lines = [
        f"# Benchmark with history: {run.history.jobs} finished jobs kept, then "
        f"{config.jobs} jobs x {config.pods_per_job} pods, {config.rounds} round(s) a phase",
        "",
        "One control plane. The usual rounds on an empty cluster; then the history made and "
        "ended through a live operator (every 10th job fails; cleanPodPolicy None, Running and "
        "All in turn; no TTL); then one round by that operator; then the usual rounds again, "
        "each with an operator restarted over the history. Each cell: the median over the "
        "rounds, then [the lowest, the highest].",
        "",
        *history_tables(config, run),
        "",
    ]
    for phase, phase_rounds in run.phases.items():
        lines += [
            f"## {phase}",
            "",
            *main_table(config, phase_rounds),
            "",
            *rounds_table(config, phase_rounds),
            "",
        ]
    lines += [
        "## Writes per job by verb and resource (median of every round of every phase)",
        "",
        *writes_table(config, rounds),
        "",
        *ending(environment),
    ]
    return "\n".join(lines)


def write_history(
    config: BenchConfig, run: HistoryRun, environment: dict[str, Any]
) -> tuple[Path, Path]:
    saved = {
        "environment": environment,
        "history": dataclasses.asdict(run.history),
        "phases": {phase: _as_dicts(rounds) for phase, rounds in run.phases.items()},
    }
    rounds = [r for phase in run.phases.values() for r in phase]
    return _files(config, render_history(config, run, environment), rounds, saved)
