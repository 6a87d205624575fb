"""One benchmark run: one control plane, the contestants one after another, side by side.

Contestants:
- ``limit``: the driver's jobs, and a bare async client creating each job's Service and pods
  (rendered by the operator's own builder, owned by that job) as soon as the job's create
  returns, as fast as the server takes them;
- ``ours``: the TensorFlowJob operator as its own process;
- ``kubeflow-shipped`` / ``kubeflow-tuned``: Kubeflow's training-operator v1.9.4.

Only the contestant under test runs. Each gets a fresh namespace (its default ServiceAccount
exists before t0), is started and warmed up before t0, and is driven by the same driver with
the same concurrency. One observer process per round lists then watches pods and jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfjob_localcluster import binaries
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.control import EXIT_CODE
from tfjob_localcluster.nodepools import NodePools
from tfjob_localcluster.nodepools import load as load_node_pools
from tfjob_localcluster.operator_process import OperatorProcess

from . import audit, workload
from .kubeapi import ApiError, RawApi, namespaced
from .kubeflow import KubeflowProcess, install, private_tmp_supported, webhook_certificates

CONTESTANTS = ("limit", "ours", "kubeflow-shipped", "kubeflow-tuned")
DRIVER = "bench-driver"
LIMIT = "bench-limit"
OBSERVER = "bench-observer"
IDENTITIES = {
    "limit": LIMIT,
    "ours": "tfjob-operator-bench",
    "kubeflow-shipped": "kubeflow-training-operator-shipped",
    "kubeflow-tuned": "kubeflow-training-operator-tuned",
}
# The minimum status writes per job: one per condition change (Created, Running, and
# Succeeded or Failed).
MIN_STATUS_WRITES = 3
FINISHED_PHASES = ("Succeeded", "Failed")


@dataclass
class BenchConfig:
    jobs: int = 200
    pods_per_job: int = 4
    contestants: tuple[str, ...] = CONTESTANTS
    out: Path = Path("bench-results")
    concurrency: int = 128
    wave: int = 0  # jobs per wave (0: all at once)
    fail_every: int = 10  # every n-th job's worker 0 exits 1
    nodes: int = 10
    max_pods: int = 110
    scale: bool = False  # long node leases, KCM grace period: for hundreds of nodes
    limit_client: str = "aiohttp"  # or kubernetes-aio
    state_dir: Path | None = None
    rounds: int = 3  # each contestant this many times, interleaved: limit, ours, ..., limit, ...
    history: int = 0  # finished jobs to make before measuring again (see history.py); 0: none
    history_pods: int = 2  # workers per history job
    history_wave: int = 1000  # history jobs made and ended at a time
    pod_groups: bool = False  # found at run time: the cluster serves PodGroups (a job has one)
    settle_seconds: float = 2.0
    log: Callable[[str], None] = print

    def phase_timeout(self) -> float:
        return 120 + 0.5 * self.jobs * self.pods_per_job


@dataclass
class ContestantResult:
    name: str
    identity: str
    round: int = 1
    phase: str = ""  # the history benchmark's phase (empty, live, restarted)
    namespace: str = ""
    ok: bool = False
    error: str | None = None
    submit_seconds: float | None = None
    p1_seconds: float | None = None
    p1_audit_seconds: float | None = None
    pods_created: int = 0
    services_created: int = 0
    running_seconds: float | None = None
    p2_succeeded: list[float] = field(default_factory=list)
    p2_failed: list[float] = field(default_factory=list)
    # Server's clock: worker 0's last pod status write -> the job's next status write, done.
    p2_audit: list[float] = field(default_factory=list)
    expected_succeeded: int = 0
    expected_failed: int = 0
    wrong_terminal: list[str] = field(default_factory=list)
    missing_terminal: list[str] = field(default_factory=list)
    jobs_with_wrong_pod_count: list[str] = field(default_factory=list)
    writes: dict[str, Any] = field(default_factory=dict)
    writes_create_phase: dict[str, Any] = field(default_factory=dict)
    writes_finish_phase: dict[str, Any] = field(default_factory=dict)
    rss_peak_mb: float | None = None
    cpu_seconds_total: float | None = None
    cpu_seconds_measured: float | None = None
    client_cpu_seconds: float | None = None  # the limit's own client, while it creates
    children_seconds: float | None = None  # the limit: its first child create to its last
    log_errors: int | None = None  # ERROR lines and tracebacks from t0 to the end
    log_errors_whole_run: int | None = None  # with startup, warm-up and cleanup
    log_error_kinds: dict[str, int] = field(default_factory=dict)  # t0 to the end, by kind
    log_error_samples: list[str] = field(default_factory=list)
    log_warning_kinds: dict[str, int] = field(default_factory=dict)  # t0 to the end, by kind
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # From the operator's launch to the warm-up job's pods seen (a fresh process only).
    ready_seconds: float | None = None
    # The history benchmark: launch -> a pass over every finished job done, none waiting; and
    # the operator's writes in the history's namespace, from its launch to the round's end.
    settled_seconds: float | None = None
    history_writes: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """Its round's name, for its markers and labels: ``ours-r2``, ``ours-restarted-r2``."""
        return f"{self.name}-{self.phase + '-' if self.phase else ''}r{self.round}"

    @property
    def jobs_ok(self) -> bool:
        return not (self.wrong_terminal or self.missing_terminal or self.jobs_with_wrong_pod_count)


# ----- process figures --------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


_ERROR_LINE = re.compile(r"(\bERROR\b|\berror\b\s|\"level\":\"error\"|^Traceback)", re.MULTILINE)


_VARYING = re.compile(
    r"job-\d+|warm-up|bench-[\w-]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\d{4}-\d\d-\d\d[T ][\d:.,]+Z?|\b\d+\b"
)


def error_kind(line: str) -> str:
    """An error line with names, ids, times and numbers blanked, to count alike ones.

    For a structured (zap) line, its message and its `error` field, which tells them apart.
    """
    text = _VARYING.sub("*", line)
    if '"error": ' in text:
        head = text.split("{", 1)[0].strip()
        text = f"{head} error: {text.split(chr(34) + 'error' + chr(34) + ': ', 1)[1]}"
    return text[:200]


def log_errors(text: str) -> list[str]:
    """ERROR lines and tracebacks (kopf's `[... ERROR ]`, zap's `ERROR` / `"level":"error"`)."""
    found = []
    for line in text.splitlines():
        if (
            " ERROR " in line
            or "\tERROR\t" in line
            or '"level":"error"' in line
            or line.startswith("Traceback")
            or re.search(r"\[[^\]]*ERROR\s*\]", line)
        ):
            found.append(line[:1000])
    return found


def log_warnings(text: str) -> list[str]:
    """WARNING lines (kopf's `[WARNING ]`, zap's `WARN`): not errors, but worth a look."""
    return [
        line[:300]
        for line in text.splitlines()
        if "[WARNING" in line or "\tWARN\t" in line or '"level":"warn' in line
    ]


# ----- the observer -----------------------------------------------------------------------
class Observer:
    """The observer process of one round, and what it has reported so far."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        selector: str,
        jobs: workload.JobKind | None,
        log_path: Path,
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "tfjob_bench.observer",
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            f"--selector={selector}",
        ]
        if jobs is not None:
            self.argv.append(f"--jobs={jobs.group}/{jobs.version}/{jobs.plural}")
        self.log_path = log_path
        self.pod_first_seen: dict[str, float] = {}
        self.pod_phase: dict[str, str] = {}
        # Counts kept as events arrive, so that a wait costs O(1) per event at 5,000 pods.
        self.phase_count: Counter[str] = Counter()
        self.worker0_phase_count: Counter[str] = Counter()
        self.terminal_jobs: set[str] = set()
        self.pod_phase_at: dict[tuple[str, str], float] = {}
        self.job_condition_at: dict[tuple[str, str], float] = {}
        self.errors: list[str] = []
        self._changed = asyncio.Condition()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Observer:
        self._stderr = self.log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait(
            [asyncio.create_task(self._ready.wait()), self._reader],
            timeout=60,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not self._ready.is_set():
            raise RuntimeError(f"the observer did not open its watches; see {self.log_path}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._process.wait(), 10)
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._stderr.close()

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        while True:
            line = await self._process.stdout.readline()
            if not line:
                break
            record = json.loads(line)
            kind = record["e"]
            if kind == "ready":
                self._ready.set()
            elif kind == "pod":
                name, phase = record["name"], record["phase"]
                self.pod_first_seen.setdefault(name, record["t"])
                counts = [self.phase_count]
                if name.endswith("-worker-0"):
                    counts.append(self.worker0_phase_count)
                previous = self.pod_phase.get(name)
                for count in counts:
                    if previous is not None:
                        count[previous] -= 1
                    count[phase] += 1
                self.pod_phase[name] = phase
                self.pod_phase_at.setdefault((name, phase), record["t"])
            elif kind == "job":
                self.job_condition_at.setdefault((record["name"], record["cond"]), record["t"])
                if record["cond"] in ("Succeeded", "Failed"):
                    self.terminal_jobs.add(record["name"])
            elif kind == "error":
                self.errors.append(record["what"])
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        async def until() -> None:
            async with self._changed:
                while not predicate():
                    if self._reader is not None and self._reader.done():
                        raise RuntimeError(f"the observer stopped; see {self.log_path}")
                    await self._changed.wait()

        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError as error:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}") from error

    def others_in_phase(self, phase: str) -> int:
        """Pods other than worker 0 in ``phase``."""
        return self.phase_count[phase] - self.worker0_phase_count[phase]


# ----- the harness ------------------------------------------------------------------------
class Bench:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.run_id = time.strftime("%H%M%S")
        # Absolute: the kubeconfigs written under it name their certificate files by path.
        self.out = config.out.resolve()
        # One dict per round, contestant -> its result, in run order.
        self.rounds: list[dict[str, ContestantResult]] = []
        self.environment: dict[str, Any] = {}
        self.marker_seq = 0
        self.cluster: LocalCluster | None = None
        self.kubeconfigs: dict[str, Path] = {}
        self.kubeflow_certificates: dict[str, bytes] | None = None
        # The PodGroup API the cluster serves (gang scheduling), as the operator discovers it:
        # the limit creates what the operator creates.
        self.pod_group_api: str | None = None

    def log(self, message: str) -> None:
        self.config.log(f"[bench {time.strftime('%H:%M:%S')}] {message}")

    # --- setup ---
    def node_pools(self) -> NodePools:
        pools = load_node_pools(Path(__file__).parent / "nodepools.yaml")
        gpu = pools.pool(workload.BENCH_POOL).model_copy(
            update={"count": self.config.nodes, "max_pods": self.config.max_pods}
        )
        return NodePools(pools=[gpu if p.name == gpu.name else p for p in pools.pools])

    def build(self) -> None:
        names = list(binaries.DEFAULT_COMPONENTS)
        if any(c.startswith("kubeflow") for c in self.config.contestants):
            names.append("training-operator")
        spent = binaries.ensure_built(names, log=self.log)
        self.environment["build_seconds"] = spent

    def start_cluster(self) -> LocalCluster:
        state_dir = (self.config.state_dir or (self.out / "cluster")).resolve()
        cluster = LocalCluster(
            state_dir=state_dir,
            node_pools=self.node_pools(),
            audit_policy=audit.POLICY,
            # KCM's default 20 QPS would make namespace cleanup and GC the slowest part;
            # the same for every contestant.
            component_api_qps=500,
            node_lease_seconds=120 if self.config.scale else 40,
            node_monitor_grace_period="240s" if self.config.scale else None,
        )
        cluster.clear_state()
        self.log(f"starting the control plane in {state_dir} ({self.config.nodes} GPU nodes)")
        cluster.start(timeout=300 if self.config.scale else 120)
        self.log(f"control plane ready in {cluster.startup_seconds['total']:.1f} s")
        self.cluster = cluster
        for user in (DRIVER, LIMIT, OBSERVER, *IDENTITIES.values()):
            self.kubeconfigs[user] = cluster.kubeconfig_for(user, groups=("system:masters",))
        return cluster

    def install_crds(self) -> None:
        from tfjob_operator.api.crd import custom_resource_definition

        assert self.cluster is not None
        self.cluster.install_crd(custom_resource_definition())
        if any(c.startswith("kubeflow") for c in self.config.contestants):
            self.kubeflow_certificates = webhook_certificates()
            install(binaries.kubectl(), self.cluster.kubeconfig, self.kubeflow_certificates)

    async def discover(self, api: RawApi) -> None:
        """The PodGroup API the operator will find (unless its gang scheduling is off)."""
        from tfjob_operator.core.gang import pick_pod_group_api
        from tfjob_operator.settings import OperatorSettings

        if not OperatorSettings.from_environment().gang_scheduling:
            return
        try:
            group = await api.get("/apis/scheduling.k8s.io")
        except ApiError:
            return
        served = {str(v["groupVersion"]) for v in group.get("versions") or []}
        self.pod_group_api = pick_pod_group_api(served)
        self.config.pod_groups = self.pod_group_api is not None
        self.environment["pod_group_api"] = self.pod_group_api or "none (no gang scheduling)"

    # --- helpers ---
    async def mark(self, api: RawApi, label: str) -> None:
        self.marker_seq += 1
        name = f"{audit.MARKER_PREFIX}{self.marker_seq:03d}-{label}"
        await api.create(
            namespaced(audit.MARKER_NAMESPACE, "configmaps"),
            {"metadata": {"name": name}, "data": {"at": str(time.time())}},
        )

    async def fresh_namespace(self, api: RawApi, name: str) -> None:
        await api.create("/api/v1/namespaces", {"metadata": {"name": name}})
        deadline = time.monotonic() + 60
        while not await api.exists(namespaced(name, "serviceaccounts", name="default")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no default ServiceAccount in {name} after 60 s")
            await asyncio.sleep(0.1)

    async def delete_namespace(self, api: RawApi, name: str, timeout: float = 600) -> float:
        started = time.monotonic()
        await api.delete(f"/api/v1/namespaces/{name}")
        while await api.exists(f"/api/v1/namespaces/{name}"):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"namespace {name} still there after {timeout:.0f} s")
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    async def in_parallel(
        self, items: list[Any], work: Callable[[Any], Any], concurrency: int | None = None
    ) -> None:
        """Run ``work`` over ``items`` with a fixed number of workers (first error wins)."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)

        async def worker() -> None:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await work(item)

        workers = concurrency or self.config.concurrency
        await asyncio.gather(*(worker() for _ in range(min(workers, len(items)) or 1)))

    async def in_waves(
        self,
        bodies: list[dict[str, Any]],
        submit: Callable[[dict[str, Any]], Awaitable[Any]],
        observer: Observer,
        result: ContestantResult,
        t0: float,
        failed: list[asyncio.Task[None]] | None = None,
    ) -> None:
        """Submit the jobs a wave at a time (``--wave``; 0: all at once), the next once the
        observer has seen every pod so far, the last wave's too. A task of ``failed`` that
        ends (a helper that raised) ends the waiting with its error."""
        config = self.config
        wave = config.wave or len(bodies)
        for first in range(0, len(bodies), wave):
            batch = bodies[first : first + wave]
            await self.in_parallel(batch, submit)
            if first == 0:
                result.submit_seconds = time.monotonic() - t0
            wanted = (first + len(batch)) * config.pods_per_job
            seen = asyncio.create_task(
                observer.wait(
                    lambda wanted=wanted: len(observer.pod_first_seen) >= wanted,
                    config.phase_timeout(),
                    f"{result.tag}'s pods of jobs {first}..{first + len(batch) - 1}",
                )
            )
            await asyncio.wait([seen, *(failed or [])], return_when=asyncio.FIRST_COMPLETED)
            for task in failed or []:
                if task.done():
                    seen.cancel()
                    task.result()
                    raise RuntimeError(f"a helper of {result.tag} stopped")
            await seen

    def observer(self, namespace: str, kind: workload.JobKind | None, label: str) -> Observer:
        return Observer(
            self.kubeconfigs[OBSERVER],
            namespace,
            f"{workload.RUN_LABEL}={label}",
            kind,
            self.out / "logs" / f"observer-{label}.log",
        )

    # --- the limit ---
    async def run_limit(self, driver: RawApi, result: ContestantResult) -> None:
        config = self.config
        namespace = result.namespace
        label = f"{result.tag}-{self.run_id}"
        await self.fresh_namespace(driver, namespace)
        # The driver submits the same jobs as to an operator, from the same t0, and the bare
        # client creates each job's children as soon as the driver's create of it returns (they
        # carry its real UID): an operator that needed no watch and no time to think. The time
        # to create the children alone is reported beside it.
        bodies = [
            workload.job(workload.OURS, workload.job_name(i), namespace, config.pods_per_job, label)
            for i in range(config.jobs)
        ]
        # Rendered by the operator's own first pass before t0 (the job's uid is set when its
        # create returns): the limit's clock measures creates, not the operator's thinking.
        rendered = {
            body["metadata"]["name"]: workload.render_children(
                body, "uid-of-the-created-job", self.pod_group_api
            )
            for body in bodies
        }
        jobs_path = namespaced(
            namespace, workload.OURS.plural, group="tfjob.dev", version="v1alpha1"
        )
        create = await self.limit_creator()
        async with self.observer(namespace, None, label) as observer, create as limit:
            await warm(driver, jobs_path, config.concurrency)
            await limit.warm(namespaced(namespace, "pods"), config.concurrency)
            # As an operator's warm-up job: one job's children made before t0 (the first
            # create of a kind costs the API server more than the rest), not watched.
            warm_up = workload.job(
                workload.OURS, "warm-up", namespace, config.pods_per_job, f"warm-{label}"
            )
            warm_uid = (await driver.create(jobs_path, warm_up))["metadata"]["uid"]
            warm_children = workload.render_children(warm_up, warm_uid, self.pod_group_api)
            await create_rendered(limit, namespace, [child for _, child in warm_children])
            await self.mark(driver, f"{result.tag}-start")
            children_started: list[float] = []
            ready: asyncio.Queue[tuple[dict[str, Any], str] | None] = asyncio.Queue()

            async def submit(body: dict[str, Any]) -> None:
                created = await driver.create(jobs_path, body)
                ready.put_nowait((body, created["metadata"]["uid"]))

            async def create_children() -> None:
                while (item := await ready.get()) is not None:
                    body, uid = item
                    children_started.append(time.monotonic())
                    children = workload.owned_by(rendered[body["metadata"]["name"]], uid)
                    await create_rendered(limit, namespace, [child for _, child in children])

            t0 = time.monotonic()
            cpu0 = time.process_time()
            creators = [asyncio.create_task(create_children()) for _ in range(config.concurrency)]
            # The same waves as an operator gets: the next once every pod so far is seen.
            # The same waves as an operator gets; a creator that failed ends the round at once.
            await self.in_waves(bodies, submit, observer, result, t0, failed=creators)
            for _ in creators:
                ready.put_nowait(None)
            await asyncio.gather(*creators)
            result.children_seconds = time.monotonic() - min(children_started)
            result.client_cpu_seconds = time.process_time() - cpu0
            result.p1_seconds = max(observer.pod_first_seen.values()) - t0
            result.pods_created = len(observer.pod_first_seen)
            result.services_created = config.jobs
            await self.mark(driver, f"{result.tag}-end")
        result.ok = True

    async def limit_creator(self) -> Any:
        """An async context manager yielding ``create(path, body)`` for the limit's client."""
        kubeconfig = self.kubeconfigs[LIMIT]
        if self.config.limit_client == "kubernetes-aio":
            return _KubernetesAioCreator(kubeconfig, self.config.concurrency)
        return _RawCreator(kubeconfig, self.config.concurrency)

    # --- an operator ---
    def start_operator(self, name: str) -> tuple[Any, int]:
        assert self.cluster is not None
        kubeconfig = self.kubeconfigs[IDENTITIES[name]]
        log_dir = self.out / "logs"
        if name == "ours":
            pools = {p.name: {"gpu": p.gpus > 0} for p in self.cluster.node_pools.pools}
            operator = OperatorProcess(
                kubeconfig=kubeconfig,
                log_dir=log_dir,
                env={"TFJOB_NODE_POOLS": json.dumps(pools)},
                extra_args=["--metrics-address=127.0.0.1", f"--metrics-port={_free_port()}"],
            )
            process = operator.start(timeout=120)
            return operator, process.pid
        assert self.kubeflow_certificates is not None
        peer = KubeflowProcess(
            kubeconfig=kubeconfig,
            log_dir=log_dir,
            work_dir=self.out / "kubeflow",
            certificates=self.kubeflow_certificates,
            tuned=name == "kubeflow-tuned",
        )
        process = peer.start()
        return peer, process.pid

    async def warm_up(
        self,
        driver: RawApi,
        tag: str,
        kind: workload.JobKind,
        launch: Callable[[], Awaitable[float]] | None = None,
    ) -> float | None:
        """One job through the operator in a scratch namespace: its informers are live.

        ``launch`` starts the operator (returning when it began) once the namespace and the
        observer are ready; the job is created as soon as the operator answers its liveness
        probe. Returns the seconds from launch to every pod of the job seen."""
        namespace = f"bench-warm-{tag}-{self.run_id}"
        label = f"warm-{tag}-{self.run_id}"
        await self.fresh_namespace(driver, namespace)
        pods = self.config.pods_per_job
        launched: float | None = None
        async with self.observer(namespace, kind, label) as observer:
            if launch is not None:
                launched = await launch()
            body = workload.job(kind, "warm-up", namespace, pods, label)
            await driver.create(
                namespaced(namespace, kind.plural, group=kind.group, version=kind.version), body
            )
            await observer.wait(
                lambda: len(observer.pod_first_seen) >= pods,
                self.config.phase_timeout(),
                f"{tag}'s warm-up pods",
            )
            ready = None if launched is None else time.monotonic() - launched
        await self.delete_namespace(driver, namespace)
        return ready

    def launched(self, result: ContestantResult, operator: Any, at: float) -> None:
        """The operator of ``result`` answered its liveness probe (launched ``at``)."""

    async def settle(self, driver: RawApi, result: ContestantResult, operator: Any) -> None:
        """Wait, after the warm-up, until the operator has nothing left from before t0 (here:
        nothing; the history benchmark waits for its passes over the finished jobs)."""

    async def run_operator(
        self,
        driver: RawApi,
        result: ContestantResult,
        running: tuple[Any, int] | None = None,
    ) -> None:
        """One round of an operator: started (or ``running`` already), warmed up, measured."""
        config = self.config
        name = result.name
        kind = workload.OURS if name == "ours" else workload.KUBEFLOW
        namespace = result.namespace
        label = f"{result.tag}-{self.run_id}"
        started: list[tuple[Any, int]] = [running] if running is not None else []

        async def launch() -> float:
            await self.mark(driver, f"{result.tag}-launch")
            launched = time.monotonic()
            started.append(self.start_operator(name))
            self.launched(result, started[-1][0], launched)
            return launched

        log_window: tuple[int, int] | None = None
        log_offset: int | None = None
        try:
            result.ready_seconds = await self.warm_up(
                driver, result.tag, kind, launch=None if running is not None else launch
            )
            operator, pid = started[0]
            await self.settle(driver, result, operator)
            await self.fresh_namespace(driver, namespace)
            names = [workload.job_name(i) for i in range(config.jobs)]
            bodies = [workload.job(kind, n, namespace, config.pods_per_job, label) for n in names]
            all_pods = [
                workload.worker_pod_name(n, i) for n in names for i in range(config.pods_per_job)
            ]
            jobs_path = namespaced(namespace, kind.plural, group=kind.group, version=kind.version)
            async with self.observer(namespace, kind, label) as observer:
                await warm(driver, jobs_path, config.concurrency)
                cpu_at_t0 = cpu_seconds(pid)
                log_offset = operator.process.log_path.stat().st_size
                await self.mark(driver, f"{result.tag}-start")
                t0 = time.monotonic()
                await self.in_waves(
                    bodies, lambda b: driver.create(jobs_path, b), observer, result, t0
                )
                result.p1_seconds = max(observer.pod_first_seen.values()) - t0
                result.pods_created = len(observer.pod_first_seen)
                self.log(f"{name}: all {len(all_pods)} pods seen after {result.p1_seconds:.2f} s")
                await observer.wait(
                    lambda: observer.phase_count["Running"] >= len(all_pods),
                    config.phase_timeout(),
                    f"every pod of {name} Running",
                )
                result.running_seconds = time.monotonic() - t0
                await self.mark(driver, f"{result.tag}-running")
                await self.finish(driver, observer, result, names)
                await asyncio.sleep(config.settle_seconds)  # trailing writes of the last pass
                await self.mark(driver, f"{result.tag}-end")
                result.cpu_seconds_measured = cpu_seconds(pid) - cpu_at_t0
                log_window = (log_offset, operator.process.log_path.stat().st_size)
            result.cpu_seconds_total = cpu_seconds(pid)
            result.rss_peak_mb = peak_rss_mb(pid)
            ended = {pod for pod, phase in observer.pod_phase_at if phase in FINISHED_PHASES}
            await self.check_children(driver, result, names, kind, ended)
            result.metrics = self.scrape(operator, result.tag)
        finally:
            if started:  # else it never started: the error says why
                self.stop_operator(
                    started[0], result, log_window, log_offset, keep=running is not None
                )
        result.ok = True

    def stop_operator(
        self,
        started: tuple[Any, int],
        result: ContestantResult,
        log_window: tuple[int, int] | None,
        log_offset: int | None,
        *,
        keep: bool,
    ) -> None:
        """Stop the operator (unless ``keep``) and count the ERROR lines of its log."""
        operator, _ = started
        log_path = operator.process.log_path
        if not keep:
            operator.stop()
        text = log_path.read_bytes()
        result.log_errors_whole_run = len(log_errors(text.decode(errors="replace")))
        if log_window is None and log_offset is not None:  # it failed after t0
            log_window = (log_offset, len(text))
        if log_window is not None:
            window = text[log_window[0] : log_window[1]].decode(errors="replace")
            measured = log_errors(window)
            result.log_errors = len(measured)
            result.log_error_kinds = dict(Counter(map(error_kind, measured)).most_common(8))
            result.log_error_samples = measured[:3]
            warnings = log_warnings(window)
            result.log_warning_kinds = dict(Counter(map(error_kind, warnings)).most_common(5))
        result.notes.extend(getattr(operator, "notes", []))

    async def finish(
        self, driver: RawApi, observer: Observer, result: ContestantResult, names: list[str]
    ) -> None:
        """End every pod through kwok, worker 0 last; time worker 0's end -> the job's end."""
        config = self.config
        namespace = result.namespace
        others = [
            workload.worker_pod_name(n, i) for n in names for i in range(1, config.pods_per_job)
        ]

        async def end(pod: str, code: int) -> None:
            await driver.merge_patch(
                namespaced(namespace, "pods", name=pod),
                {"metadata": {"annotations": {EXIT_CODE: str(code)}}},
            )

        await self.in_parallel(others, lambda pod: end(pod, 0))
        await observer.wait(
            lambda: observer.others_in_phase("Succeeded") >= len(others),
            config.phase_timeout(),
            "every worker but worker 0 Succeeded",
        )
        await asyncio.sleep(config.settle_seconds)  # let the operator take those in first
        await self.mark(driver, f"{result.tag}-finish")
        failing = {n for i, n in enumerate(names) if workload.fails(i, config.fail_every)}
        result.expected_failed = len(failing)
        result.expected_succeeded = len(names) - len(failing)
        await self.in_parallel(
            names, lambda n: end(workload.worker_pod_name(n, 0), 1 if n in failing else 0)
        )

        def terminal(job: str) -> str | None:
            for condition in ("Succeeded", "Failed"):
                if (job, condition) in observer.job_condition_at:
                    return condition
            return None

        try:
            await observer.wait(
                lambda: len(observer.terminal_jobs) >= len(names),
                config.phase_timeout(),
                f"every job of {result.name} Succeeded or Failed",
            )
        except TimeoutError as error:
            result.notes.append(str(error))
        for job in names:
            expected = "Failed" if job in failing else "Succeeded"
            got = terminal(job)
            if got is None:
                result.missing_terminal.append(job)
                continue
            if got != expected:
                result.wrong_terminal.append(f"{job}: {got}, expected {expected}")
                continue
            pod = workload.worker_pod_name(job, 0)
            pod_done = observer.pod_phase_at.get((pod, expected))
            if pod_done is None:
                result.notes.append(f"{pod} never seen {expected}")
                continue
            latency = observer.job_condition_at[(job, got)] - pod_done
            (result.p2_failed if expected == "Failed" else result.p2_succeeded).append(latency)

    async def check_children(
        self,
        api: RawApi,
        result: ContestantResult,
        names: list[str],
        kind: workload.JobKind,
        ended: set[str],
    ) -> None:
        """Every job has exactly its pods, but those seen end and gone since (past 12,500
        ended pods the pod garbage collector removes them); count the Services made."""
        pods, _ = await api.list_all(namespaced(result.namespace, "pods"))
        services, _ = await api.list_all(namespaced(result.namespace, "services"))
        per_job: dict[str, int] = {}
        here = {pod["metadata"]["name"] for pod in pods}
        for pod in pods:
            for owner in pod["metadata"].get("ownerReferences") or []:
                if owner.get("kind") == kind.kind:
                    per_job[owner["name"]] = per_job.get(owner["name"], 0) + 1
        wanted = self.config.pods_per_job
        result.jobs_with_wrong_pod_count = [
            f"{n}: {per_job.get(n, 0)} pods"
            for n in names
            if per_job.get(n, 0) > wanted
            or any(
                pod not in here and pod not in ended
                for pod in (workload.worker_pod_name(n, i) for i in range(wanted))
            )
        ]
        result.services_created = len(services)

    def scrape(self, operator: Any, name: str) -> dict[str, float]:
        """The operator's own metrics (saved whole); a few numbers picked out if present."""
        try:
            text = (
                operator.metrics() if isinstance(operator, KubeflowProcess) else metrics(operator)
            )
        except Exception as error:  # noqa: BLE001 - nice to have, never fatal
            return {"scrape_error": 1.0} if str(error) else {}
        (self.out / f"metrics-{name}.txt").write_text(text)  # name: the round's tag
        picked = (
            "tfjob_operator_queue_depth",
            "tfjob_operator_pods_created_total",
            "workqueue_depth",
        )
        return {k: v for k, v in metric_values(text).items() if k.startswith(picked)}

    # --- the whole run ---
    async def run_contestants(self) -> None:
        """Every contestant once a round, in the same order each round: a slow spell of the
        shared machine then touches every contestant of that round, not one alone."""
        assert self.cluster is not None
        async with RawApi(self.kubeconfigs[DRIVER], connections=self.config.concurrency) as api:
            await self.discover(api)
            await self.mark(api, "begin")
            for number in range(1, self.config.rounds + 1):
                this_round: dict[str, ContestantResult] = {}
                self.rounds.append(this_round)
                for name in self.config.contestants:
                    result = ContestantResult(name=name, identity=IDENTITIES[name], round=number)
                    result.namespace = f"bench-{result.tag}-{self.run_id}"
                    this_round[name] = result
                    await self.run_one(api, result)
            await self.mark(api, "finish")

    async def run_one(
        self, api: RawApi, result: ContestantResult, running: tuple[Any, int] | None = None
    ) -> None:
        """One contestant's round, its namespace deleted after; a failure is its result.
        ``running``: an operator process already started, left running."""
        self.log(f"{result.tag}: start")
        try:
            if result.name == "limit":
                await self.run_limit(api, result)
            else:
                await self.run_operator(api, result, running)
        except Exception as error:  # noqa: BLE001 - a failed contestant is reported
            result.error = f"{type(error).__name__}: {error}"
            self.log(f"{result.tag}: FAILED: {result.error}")
        with contextlib.suppress(Exception):
            await self.mark(api, f"{result.tag}-end")
        try:
            seconds = await self.delete_namespace(api, result.namespace)
            self.log(f"{result.tag}: namespace deleted in {seconds:.1f} s")
        except Exception as error:  # noqa: BLE001
            result.notes.append(f"namespace cleanup: {error}")
        self.log(f"{result.tag}: done: {summary_line(result)}")

    def attribute_writes(self) -> None:
        assert self.cluster is not None
        writes = audit.read(self.cluster.audit_log)
        for result in (r for this_round in self.rounds for r in this_round.values()):
            self.attribute(writes, result)

    def attribute(self, writes: list[audit.Write], result: ContestantResult) -> None:
        """``result``'s writes and its server-clock P1, from the audit log between its markers."""
        name, tag = result.name, result.tag
        phase = audit.between(writes, f"{tag}-start", f"{tag}-end")
        result.writes = audit.count(phase, result.identity).as_dict()
        if name != "limit":
            created = audit.between(writes, f"{tag}-start", f"{tag}-running")
            finished = audit.between(writes, f"{tag}-finish", f"{tag}-end")
            result.writes_create_phase = audit.count(created, result.identity).as_dict()
            result.writes_finish_phase = audit.count(finished, result.identity).as_dict()
        # Every contestant's clock starts at the driver's first job create.
        first_resource = (
            workload.KUBEFLOW.plural if name.startswith("kubeflow") else workload.OURS.plural
        )
        window = audit.creation_window(phase, result.namespace, DRIVER, first_resource)
        if window is not None:
            start, end, _pods = window
            result.p1_audit_seconds = end - start
        if name != "limit":
            result.p2_audit = audit.decision_latencies(phase, result.namespace, result.identity)
        induced = audit.induced(phase, {result.identity, DRIVER, OBSERVER, LIMIT})
        result.writes["induced"] = dict(induced.most_common(12))

    def run(self) -> list[dict[str, ContestantResult]]:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        self.build()
        cluster = self.start_cluster()
        try:
            self.install_crds()
            self.environment.update(environment(self.config, cluster))
            asyncio.run(self.run_contestants())
            self.attribute_writes()
        finally:
            cluster.stop()
            # Its logs and audit log stay for a look; its etcd data (hundreds of MB) does not.
            shutil.rmtree(cluster.state_dir / "etcd", ignore_errors=True)
        return self.rounds


async def create_rendered(creator: Any, namespace: str, children: list[dict[str, Any]]) -> None:
    """Create a job's rendered children as the operator does: what the pods join (a PodGroup)
    first, then the rest at once."""
    first = [c for c in children if c["kind"] in workload.CREATED_FIRST]
    rest = [c for c in children if c["kind"] not in workload.CREATED_FIRST]
    for child in first:
        await creator.create(workload.collection(namespace, child), child)
    await asyncio.gather(*(creator.create(workload.collection(namespace, c), c) for c in rest))


def metrics(operator: OperatorProcess) -> str:
    """Our operator's /metrics now (the bench starts it with --metrics-port)."""
    import urllib.request

    port = next(
        int(a.split("=", 1)[1]) for a in operator.extra_args if a.startswith("--metrics-port=")
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text: series (name with labels) -> value."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[series] = float(value)
    return values


def _free_port() -> int:
    from tfjob_localcluster.processes import free_port

    return free_port()


async def warm(api: RawApi, path: str, connections: int) -> None:
    """Open ``connections`` connections (TLS handshakes) before t0, with cheap reads."""
    await asyncio.gather(*(api.get(path, params={"limit": "1"}) for _ in range(connections)))


class _RawCreator:
    def __init__(self, kubeconfig: Path, connections: int) -> None:
        self.api = RawApi(kubeconfig, connections=connections)

    async def __aenter__(self) -> _RawCreator:
        await self.api.__aenter__()
        return self

    async def create(self, path: str, body: dict[str, Any]) -> Any:
        return await self.api.create(path, body)

    async def warm(self, path: str, connections: int) -> None:
        await warm(self.api, path, connections)

    async def __aexit__(self, *exc: object) -> None:
        await self.api.__aexit__(*exc)


class _KubernetesAioCreator:
    """The same creates through `kubernetes.aio`'s ApiClient, raw JSON, no models."""

    def __init__(self, kubeconfig: Path, connections: int) -> None:
        self.kubeconfig = kubeconfig
        self.connections = connections
        self.client: Any = None

    async def __aenter__(self) -> _KubernetesAioCreator:
        from kubernetes.aio import config as aio_config
        from kubernetes.aio.client import ApiClient, Configuration

        configuration = Configuration()
        await aio_config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = self.connections
        self.client = ApiClient(configuration)
        self.host = configuration.host
        return self

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        response = await self.client.call_api(
            method,
            self.host + path,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
        )
        data = await response.read()
        if response.status >= 400:
            raise ApiError(response.status, method, path, data.decode(errors="replace"))
        return json.loads(data)

    async def create(self, path: str, body: dict[str, Any]) -> Any:
        return await self._call("POST", path, body)

    async def warm(self, path: str, connections: int) -> None:
        await asyncio.gather(
            *(self._call("GET", path + "?limit=1", None) for _ in range(connections))
        )

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()


def summary_line(result: ContestantResult) -> str:
    if result.error:
        return f"FAILED ({result.error})"
    parts = [f"P1 {result.p1_seconds:.2f} s" if result.p1_seconds is not None else "P1 -"]
    if result.p2_succeeded:
        parts.append(f"P2 p50 {percentile(result.p2_succeeded, 50):.3f} s")
    if result.rss_peak_mb:
        parts.append(f"RSS {result.rss_peak_mb:.0f} MB")
    if result.missing_terminal or result.wrong_terminal:
        parts.append(
            f"JOBS NOT ENDED RIGHT: {len(result.missing_terminal)} without a terminal "
            f"condition, {len(result.wrong_terminal)} with the wrong one"
        )
    if result.jobs_with_wrong_pod_count:
        parts.append(f"{len(result.jobs_with_wrong_pod_count)} jobs without exactly their pods")
    return ", ".join(parts)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def operator_revision() -> str:
    """The commit the operator ran from, and whether its folder had uncommitted changes."""
    import subprocess

    import tfjob_operator

    folder = Path(tfjob_operator.__file__).parent

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--", ".")
    return commit + (f" with {len(changed.splitlines())} uncommitted file(s)" if changed else "")


def environment(config: BenchConfig, cluster: LocalCluster) -> dict[str, Any]:
    import platform

    import kopf

    return {
        "operator_revision": operator_revision(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        "python": platform.python_version(),
        "kopf": kopf.__version__ if hasattr(kopf, "__version__") else "?",
        "kubernetes": binaries.KUBERNETES_VERSION,
        "etcd": binaries.ETCD_VERSION,
        "kwok": binaries.KWOK_VERSION,
        "training_operator": binaries.TRAINING_OPERATOR_VERSION,
        "nodes": f"{config.nodes} kwok GPU nodes x {config.max_pods} pods",
        "jobs": config.jobs,
        "pods_per_job": config.pods_per_job,
        "concurrency": config.concurrency,
        "wave": config.wave or config.jobs,
        "fail_every": config.fail_every,
        "limit_client": config.limit_client,
        "private_tmp_for_kubeflow": private_tmp_supported(),
        "startup_seconds": round(cluster.startup_seconds.get("total", 0), 1),
    }
