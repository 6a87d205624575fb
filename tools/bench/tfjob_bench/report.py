"""The run's results: a markdown table (and JSON) side by side, and the P2 latency plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

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
    """Per job: its pods, one Service, and for an operator one status write per condition."""
    return config.pods_per_job + 1 + (0 if name == "limit" else MIN_STATUS_WRITES)


def main_table(config: BenchConfig, results: dict[str, ContestantResult]) -> list[str]:
    limit = results.get("limit")
    limit_p1 = limit.p1_seconds if limit and limit.ok else None
    rows = [
        "| contestant | P1: all pods seen (s) | ratio to limit | P1 on the server's clock (s) "
        "| ratio to limit (server's clock) "
        "| pods / Services | P2 Succeeded p50 / p99 / max (s) | P2 Failed p50 / p99 / max (s) "
        "| right terminal condition (S + F) | writes per job (all / without Events) "
        "| minimum per job | writes / minimum | peak RSS (MB) | CPU s (t0→end / whole process) "
        "| ERROR lines in its log, t0→end (whole run) |",
        "|" + "---|" * 15,
    ]
    for name, r in results.items():
        if r.error and r.p1_seconds is None:
            rows.append(f"| {name} | FAILED: {r.error} |" + " |" * 13)
            continue
        ratio = (
            f"{r.p1_seconds / limit_p1:.2f}"
            if r.p1_seconds is not None and limit_p1
            else ("1.00" if name == "limit" and r.p1_seconds else "—")
        )
        limit_audit = limit.p1_audit_seconds if limit and limit.ok else None
        audit_ratio = (
            f"{r.p1_audit_seconds / limit_audit:.2f}"
            if r.p1_audit_seconds is not None and limit_audit
            else "—"
        )
        errors = (
            "—"
            if r.log_errors_whole_run is None
            else f"{'?' if r.log_errors is None else r.log_errors} ({r.log_errors_whole_run})"
        )
        total = r.writes.get("total")
        plain = r.writes.get("without_events")
        minimum = minimum_writes(config, name)
        per_job = (
            f"{total / config.jobs:.2f} / {plain / config.jobs:.2f}"
            if total is not None and plain is not None
            else "—"
        )
        over = f"{plain / config.jobs / minimum:.2f}" if plain is not None else "—"
        right = (
            "—"
            if name == "limit"
            else f"{len(r.p2_succeeded)}/{r.expected_succeeded} + "
            f"{len(r.p2_failed)}/{r.expected_failed}"
        )
        cpu = (
            f"{_seconds(r.cpu_seconds_measured, 1)} / {_seconds(r.cpu_seconds_total, 1)}"
            if r.cpu_seconds_total is not None
            else "—"
        )
        rows.append(
            f"| {name}{' (FAILED)' if r.error else ''} | {_seconds(r.p1_seconds)} | {ratio} "
            f"| {_seconds(r.p1_audit_seconds)} | {audit_ratio} "
            f"| {r.pods_created} / {r.services_created} "
            f"| {_spread(r.p2_succeeded) if name != 'limit' else '—'} "
            f"| {_spread(r.p2_failed) if name != 'limit' else '—'} | {right} | {per_job} "
            f"| {minimum} | {over} | {_seconds(r.rss_peak_mb, 0)} | {cpu} "
            f"| {errors} |"
        )
    return rows


def writes_table(config: BenchConfig, results: dict[str, ContestantResult]) -> list[str]:
    keys = sorted({k for r in results.values() for k in r.writes.get("by_verb_resource", {})})
    names = list(results)
    rows = [
        "| verb resource | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in keys:
        cells = []
        for name in names:
            n = results[name].writes.get("by_verb_resource", {}).get(key, 0)
            cells.append(f"{n / config.jobs:.2f}" if n else "")
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return rows


def render(
    config: BenchConfig,
    results: dict[str, ContestantResult],
    environment: dict[str, Any],
) -> str:
    lines = [
        f"# Benchmark: {config.jobs} jobs x {config.pods_per_job} pods",
        "",
        "One control plane for all; only the contestant under test runs; a fresh namespace each; "
        "the same driver (concurrency "
        f"{config.concurrency}) submits every contestant's jobs; every job has "
        "`runPolicy.cleanPodPolicy: None`, so no contestant deletes pods in the finish phase.",
        "",
        *main_table(config, results),
        "",
        "- P1: from the driver's first job create to the observer's watch having seen every "
        "pod, for every contestant. The limit creates each job's children as soon as the "
        "driver's create of that job returns (no watch in between). Audit column: the first "
        "job create received to the last pod create completed, on the API server's clock.",
        "- P2: the observer sees worker 0 Succeeded (Failed) -> it sees the job's Succeeded "
        f"(Failed) condition True. Every {config.fail_every}th job's worker 0 exits 1.",
        f"- Minimum writes per job: {config.pods_per_job} pods + 1 Service + "
        f"{MIN_STATUS_WRITES} status writes (Created, Running, Succeeded or Failed) for an "
        "operator; pods + 1 Service for the limit. Kubeflow makes one Service per pod by "
        "design, so its floor is higher; the minimum is the same bar for both.",
        "- Writes are the contestant's own identity's, from the audit log between its start "
        "and end markers.",
        "",
        "## Writes per job by verb and resource (contestant's identity)",
        "",
        *writes_table(config, results),
        "",
        "## Per contestant",
        "",
    ]
    for name, r in results.items():
        lines.append(f"### {name}")
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
        "- One round per contestant, in the order shown, on a machine whose every core is shared "
        "by the control plane, kwok, the observer and the contestant: expect run-to-run noise of "
        "tens of percent; compare contestants within a run, and rerun before trusting a small gap. "
        "The limit moves most (1.6 to 4.0 s for 200 x 4 in three runs on one machine), and every "
        "ratio with it.",
        "- P1 ends when the observer has seen the last pod; under a burst its watch can trail the "
        "server (the server's-clock column, from the audit log, does not).",
        "- Kubeflow makes one Service per pod and has a 611 kB CRD schema; neither is corrected "
        "for. Its log level is debug as shipped and info when tuned.",
        "- Writes are counted at the audit log's Metadata level (reads and Leases not logged), the "
        "same audit cost for every contestant.",
        "",
        "## Environment",
        "",
        *(f"- {k}: {v}" for k, v in environment.items()),
        "",
        f"![P2 latency]({PLOT})",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, ContestantResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 6.5), dpi=110)
    colours = {"ours": "#1f77b4", "kubeflow-shipped": "#d62728", "kubeflow-tuned": "#2ca02c"}
    drawn = False
    for name, r in results.items():
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
                label=f"{name}, {outcome} (n={len(ordered)}, p50 {percentile(values, 50):.3f} s)",
            )
            drawn = True
    axis.set_xscale("log")
    axis.set_xlabel(
        "worker 0 ended → job condition True, as seen by the observer (s, log scale; ≤1 ms at 1 ms)"
    )
    axis.set_ylabel("fraction of jobs")
    axis.set_ylim(0, 1.02)
    axis.grid(True, which="both", alpha=0.3)
    axis.set_title("P2: pod that decides → job condition (CDF)")
    if drawn:
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8)
    else:
        axis.text(0.5, 0.5, "no P2 samples", transform=axis.transAxes, ha="center")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write(
    config: BenchConfig,
    results: dict[str, ContestantResult],
    environment: dict[str, Any],
) -> tuple[Path, Path]:
    config.out.mkdir(parents=True, exist_ok=True)
    markdown = config.out / MARKDOWN
    png = config.out / PLOT
    markdown.write_text(render(config, results, environment))
    plot(results, png)
    (config.out / JSON).write_text(
        json.dumps(
            {
                "environment": environment,
                "results": {n: dataclasses.asdict(r) for n, r in results.items()},
            },
            indent=2,
            default=str,
        )
    )
    return markdown, png
