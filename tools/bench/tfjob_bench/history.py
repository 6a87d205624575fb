"""The benchmark on a cluster that keeps its history (`tfjob-bench --history N`).

Real clusters keep finished jobs nobody deletes (no TTL) with the pods their cleanPodPolicy
leaves, and restart their operators among them. One run, one cluster:

1. empty: the usual rounds (the limit, ours) on a cluster with no history;
2. history: N jobs made and ended through a live operator, in waves (every 10th fails, their
   cleanPodPolicy in turn None, Running and All), with no TTL: they stay;
3. live: once the cluster is quiet again, rounds of ours by that same operator with the
   history in its memory;
4. restarted: the usual rounds again, each with a fresh operator process over the history,
   measuring besides the round's figures: launch -> a new job's pods exist (ready), launch ->
   a pass over every finished job done (settled), and every write of the operator's identity
   in the history's namespace from launch to the round's end (it should make none: those jobs
   have nothing to change).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfjob_localcluster.control import EXIT_CODE

from . import audit, workload
from .kubeapi import ApiError, RawApi, namespaced
from .runner import (
    DRIVER,
    IDENTITIES,
    Bench,
    BenchConfig,
    ContestantResult,
    cpu_seconds,
    metric_values,
    metrics,
    peak_rss_mb,
)

POLICIES = ("None", "Running", "All")  # cleanPodPolicy of history job i: POLICIES[i % 3]
EMPTY, LIVE, RESTARTED = "empty", "live", "restarted"
HISTORY_SETTLE_SECONDS = 15.0
# Quiet: the control plane and the operator together use less than QUIET_CORES of a core over
# QUIET_WINDOW seconds (the endpoint controllers work through 10,000 Services a while after).
QUIET_CORES = 0.3
QUIET_WINDOW = 5.0
QUIET_LIMIT = 300.0


@dataclass
class HistoryFigures:
    """How the history was made, and what it left."""

    jobs: int = 0
    pods_per_job: int = 0
    namespace: str = ""
    seconds: float | None = None  # first create -> every job Succeeded or Failed
    succeeded: int = 0
    failed: int = 0
    pods_left: int = 0  # pods of the finished jobs still there (cleanPodPolicy None, Running)
    services_left: int = 0
    operator_rss_mb: float | None = None  # the operator that made it, once it was made
    quiet_seconds: float | None = None  # settled -> the cluster quiet (None: never, in the limit)
    error: str | None = None


@dataclass
class HistoryRun:
    """Every phase's results; ``phases[EMPTY]`` and ``phases[RESTARTED]`` are rounds."""

    history: HistoryFigures = field(default_factory=HistoryFigures)
    phases: dict[str, list[dict[str, ContestantResult]]] = field(default_factory=dict)


def history_job(index: int, namespace: str, pods: int, run: str) -> dict[str, Any]:
    body = workload.job(workload.OURS, f"done-{index:05d}", namespace, pods, run)
    body["spec"]["runPolicy"]["cleanPodPolicy"] = POLICIES[index % len(POLICIES)]
    return body


def finished_jobs_passed(values: dict[str, float]) -> int:
    return int(
        values.get('tfjob_operator_jobs{state="Succeeded"}', 0)
        + values.get('tfjob_operator_jobs{state="Failed"}', 0)
    )


class HistoryBench(Bench):
    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self.run_data = HistoryRun()
        self.phase = EMPTY
        self.history_namespace = f"bench-history-{self.run_id}"
        self.settling: asyncio.Task[None] | None = None  # a restarted operator's settling

    def phase_rounds(self, phase: str) -> list[dict[str, ContestantResult]]:
        return self.run_data.phases.setdefault(phase, [])

    async def run_contestants(self) -> None:
        config = self.config
        async with RawApi(self.kubeconfigs[DRIVER], connections=config.concurrency) as api:
            await self.discover(api)
            await self.mark(api, "begin")
            await self.rounds_of(api, EMPTY)
            self.phase = LIVE
            operator = self.start_operator("ours")
            try:
                await self.make_history(api, operator)
                await self.rounds_of(api, LIVE, running=operator)
            finally:
                operator[0].stop()
            if self.run_data.history.error is None:
                await self.rounds_of(api, RESTARTED)
            await self.mark(api, "finish")
        self.rounds = [r for rounds in self.run_data.phases.values() for r in rounds]

    def result(self, name: str, number: int) -> ContestantResult:
        result = ContestantResult(name=name, identity=IDENTITIES[name], round=number)
        result.phase = self.phase
        result.namespace = f"bench-{result.tag}-{self.run_id}"
        return result

    async def rounds_of(
        self, api: RawApi, phase: str, running: tuple[Any, int] | None = None
    ) -> None:
        """The phase's rounds; ``running``: the operator ours uses, left running (ours alone
        then: that operator would take the limit's jobs as its own)."""
        self.phase = phase
        names = ["ours"] if running is not None else self.config.contestants
        for number in range(1, self.config.rounds + 1):
            this_round: dict[str, ContestantResult] = {}
            self.phase_rounds(phase).append(this_round)
            for name in names:
                result = this_round[name] = self.result(name, number)
                await self.run_one(api, result, running=running)  # ours alone when running

    # --- the history ---
    async def make_history(self, api: RawApi, operator: tuple[Any, int]) -> None:
        """N jobs through the live operator, a wave at a time, each ended through kwok."""
        config = self.config
        figures = self.run_data.history
        figures.jobs, figures.pods_per_job = config.history, config.history_pods
        figures.namespace = namespace = self.history_namespace
        label = f"history-{self.run_id}"
        await self.fresh_namespace(api, namespace)
        jobs_path = namespaced(
            namespace,
            workload.OURS.plural,
            group=workload.OURS.group,
            version=workload.OURS.version,
        )
        await self.mark(api, "history-start")
        started = time.monotonic()
        try:
            async with self.observer(namespace, workload.OURS, label) as observer:
                wave = config.history_wave or config.history
                for first in range(0, config.history, wave):
                    indexes = range(first, min(config.history, first + wave))
                    await self.history_wave(api, observer, jobs_path, indexes, label)
                    self.log(
                        f"history: {indexes[-1] + 1} of {config.history} jobs ended after "
                        f"{time.monotonic() - started:.0f} s"
                    )
            figures.seconds = time.monotonic() - started
        except Exception as error:  # noqa: BLE001 - reported; the restarted rounds need it
            figures.error = f"{type(error).__name__}: {error}"
            self.log(f"history: FAILED: {figures.error}")
            return
        finally:
            await self.mark(api, "history-end")
        # The last wave's count-only status writes wait up to COUNTS_DELAY (10 s) after its
        # end: the history is settled once they are in.
        await asyncio.sleep(HISTORY_SETTLE_SECONDS)
        jobs, _ = await api.list_all(jobs_path)
        conditions = Counter(job_end(job) for job in jobs)
        figures.succeeded, figures.failed = conditions["Succeeded"], conditions["Failed"]
        pods, _ = await api.list_all(namespaced(namespace, "pods"))
        services, _ = await api.list_all(namespaced(namespace, "services"))
        figures.pods_left, figures.services_left = len(pods), len(services)
        figures.operator_rss_mb = peak_rss_mb(operator[1])
        self.log(
            f"history: {figures.succeeded} Succeeded, {figures.failed} Failed, "
            f"{figures.pods_left} pods left, in {figures.seconds:.0f} s; "
            f"operator peak RSS {figures.operator_rss_mb:.0f} MB"
        )
        figures.quiet_seconds = await self.until_quiet([operator[1]])
        self.log(
            "history: the cluster is quiet after "
            + (f"{figures.quiet_seconds:.0f} s" if figures.quiet_seconds is not None else "-")
        )

    async def until_quiet(self, pids: list[int]) -> float | None:
        """Wait until the control plane's processes and ``pids`` use less than QUIET_CORES of
        a core over QUIET_WINDOW seconds (the live rounds must not meet the history's
        aftermath): the seconds waited, None after QUIET_LIMIT."""
        assert self.cluster is not None
        pids = [p.pid for p in self.cluster.running] + pids
        started = time.monotonic()
        used = sum(cpu_seconds(pid) for pid in pids)
        while time.monotonic() - started < QUIET_LIMIT:
            await asyncio.sleep(QUIET_WINDOW)
            before, used = used, sum(cpu_seconds(pid) for pid in pids)
            if used - before < QUIET_CORES * QUIET_WINDOW:
                return time.monotonic() - started
        return None

    async def history_wave(
        self,
        api: RawApi,
        observer: Any,
        jobs_path: str,
        indexes: range,
        label: str,
    ) -> None:
        config = self.config
        namespace = self.history_namespace
        bodies = [history_job(i, namespace, config.history_pods, label) for i in indexes]
        await self.in_parallel(bodies, lambda body: api.create(jobs_path, body))
        names = [body["metadata"]["name"] for body in bodies]
        pods = [workload.worker_pod_name(n, k) for n in names for k in range(config.history_pods)]
        await observer.wait(
            until_all(pods, lambda pod: observer.pod_phase.get(pod) == "Running"),
            config.phase_timeout(),
            f"the history's pods {names[0]}..{names[-1]} Running",
        )
        failing = {n for i, n in zip(indexes, names, strict=True) if workload.fails(i, 10)}

        async def end(pod: str) -> None:
            job = pod.rsplit("-worker-", 1)[0]
            code = 1 if job in failing and pod.endswith("-worker-0") else 0
            try:
                await api.merge_patch(
                    namespaced(namespace, "pods", name=pod),
                    {"metadata": {"annotations": {EXIT_CODE: str(code)}}},
                )
            except ApiError as error:
                # Its job ended first (worker 0 decides) and its cleanPodPolicy took the pod.
                if error.status != 404:
                    raise

        await self.in_parallel(pods, end)
        await observer.wait(
            until_all(names, lambda name: name in observer.terminal_jobs),
            config.phase_timeout(),
            f"the history's jobs {names[0]}..{names[-1]} Succeeded or Failed",
        )

    # --- a restarted operator ---
    def launched(self, result: ContestantResult, operator: Any, at: float) -> None:
        """A fresh operator over the history: follow its metrics from now, beside the warm-up,
        until a pass over every finished job is done and no pass waits."""
        if self.phase == RESTARTED and result.name == "ours":
            self.settling = asyncio.get_running_loop().create_task(
                self.until_settled(result, operator, at)
            )

    async def until_settled(self, result: ContestantResult, operator: Any, at: float) -> None:
        deadline = at + self.config.phase_timeout()
        wanted = self.run_data.history.succeeded + self.run_data.history.failed
        passed = 0
        while time.monotonic() < deadline:
            try:
                values = metric_values(metrics(operator))
            except OSError:  # its metrics server not listening yet
                values = {}
            passed = finished_jobs_passed(values)
            if passed >= wanted and values.get("tfjob_operator_queue_depth", 1) == 0:
                result.settled_seconds = time.monotonic() - at
                return
            await asyncio.sleep(0.1)
        result.notes.append(f"settling: {passed} of {wanted} finished jobs passed")

    async def settle(self, driver: RawApi, result: ContestantResult, operator: Any) -> None:
        if self.settling is None:
            return
        settling, self.settling = self.settling, None
        await settling
        await self.mark(driver, f"{result.tag}-settled")

    def attribute(self, writes: list[audit.Write], result: ContestantResult) -> None:
        super().attribute(writes, result)
        if result.name == "limit":
            return
        first = f"{result.tag}-launch" if result.phase == RESTARTED else f"{result.tag}-start"
        window = audit.between(writes, first, f"{result.tag}-end")
        touched = [w for w in window if w.namespace == self.history_namespace]
        result.history_writes = audit.count(touched, result.identity).as_dict()


def until_all(items: list[str], done: Callable[[str], bool]) -> Callable[[], bool]:
    """A predicate for Observer.wait: every item done. Items stay done once they are, so each
    is checked until it is, not on every watch event (thousands of pods a wave)."""
    waiting = list(items)

    def predicate() -> bool:
        while waiting and done(waiting[-1]):
            waiting.pop()
        return not waiting

    return predicate


def job_end(job: dict[str, Any]) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None
