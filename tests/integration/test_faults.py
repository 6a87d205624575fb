"""Faults of real processes under a running operator, on a control plane of the test's own (the
session's is shared). Each test prints its figures."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.rest import ApiException

from tests.support.admission import DeletesRefused
from tests.support.jobs import kubeflow_job, replica
from tests.support.own_cluster import own_cluster
from tfjob_localcluster import control, processes
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.nodepools import NodePool
from tfjob_localcluster.operator_process import OperatorProcess
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.timeout(300)]

POOL = NodePool(name="cpu", count=3, cpu="64", memory="256Gi")
NAMESPACE = "default"
CREATED = re.compile(r"(\S+)/(\S+): created pod (\S+)")


def states(custom: k8s.CustomObjectsApi) -> dict[str, str | None]:
    jobs = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    return {job["metadata"]["name"]: (job.get("status") or {}).get("state") for job in jobs}


def wait_for_states(
    custom: k8s.CustomObjectsApi, wanted: dict[str, str], timeout: float, what: str
) -> None:
    def reached() -> bool:
        try:
            current = states(custom)
        except (ApiException, OSError):
            return False  # the API server is not back yet
        return all(current.get(job) == state for job, state in wanted.items())

    processes.wait_until(reached, timeout=timeout, what=what, interval=0.2)


def create_jobs(custom: k8s.CustomObjectsApi, names: list[str], restart_policy: str) -> None:
    """Jobs of 2 workers each, under ``restart_policy``."""
    for name in names:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            kubeflow_job(name, {"Worker": replica(2, restartPolicy=restart_policy)}),
        )


class PodLedger:
    """Every pod ever created in the namespace, by (name, attempt): a background watch."""

    def __init__(self, core: k8s.CoreV1Api) -> None:
        self.uids: dict[tuple[str, str], set[str]] = {}
        self.error: Exception | None = None
        self.seen: list[str] = []  # every event, for a failure's message
        self._stopped = False
        self._stream = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(core,), daemon=True)
        self._thread.start()

    def _run(self, core: k8s.CoreV1Api) -> None:
        try:
            for event in self._stream.stream(core.list_namespaced_pod, NAMESPACE):
                pod = event["object"]
                attempt = (pod.metadata.labels or {}).get("tfjob.dev/attempt", "")
                self.uids.setdefault((pod.metadata.name, attempt), set()).add(pod.metadata.uid)
                self.seen.append(
                    f"{event['type']} {pod.metadata.name} a{attempt} {pod.metadata.uid[:8]} "
                    f"created {pod.metadata.creation_timestamp} phase {pod.status.phase}"
                )
        except Exception as error:  # noqa: BLE001 (reported by twice(), unless stopping)
            if not self._stopped:
                self.error = error

    def twice(self) -> dict[tuple[str, str], int]:
        """(pod, attempt) pairs created more than once, and how often."""
        assert self.error is None, f"the ledger's watch broke: {self.error!r}"
        twice = {key: len(uids) for key, uids in self.uids.items() if len(uids) > 1}
        for name, _ in twice:
            print("\n".join(line for line in self.seen if f" {name} " in line))
        return twice

    def stop(self) -> None:
        self._stopped = True
        self._stream.stop()


# The operator always deletes a pod with its uid as a precondition; whoever else deletes one
# is found in the API server's audit log, with the pod it removed.
POD_DELETES = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "RequestResponse", "verbs": ["delete"], "resources": [{"resources": ["pods"]}]},
        {"level": "None"},
    ],
}
# `make faults` runs the documented size: TFJOB_FAULT_JOBS=100 TFJOB_FAULT_KILLS=10.
FAULT_JOBS = int(os.environ.get("TFJOB_FAULT_JOBS") or 24)
FAULT_KILLS = int(os.environ.get("TFJOB_FAULT_KILLS") or 6)


def pod_deletes(audit_log: Path) -> tuple[set[str], dict[str, str]]:
    """The uids the operator deleted (by uid precondition), and for every pod removed by a
    DELETE without one, who sent it."""
    by_operator: set[str] = set()
    others: dict[str, str] = {}
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        if (event.get("responseStatus") or {}).get("code", 200) >= 300:
            continue
        precondition = ((event.get("requestObject") or {}).get("preconditions") or {}).get("uid")
        removed = ((event.get("responseObject") or {}).get("metadata") or {}).get("uid")
        if precondition:
            by_operator.add(precondition)
        elif removed:
            others[removed] = event.get("userAgent", "?").split(" ")[0]
    return by_operator, others


@pytest.mark.timeout(300 + 8 * FAULT_JOBS)
def test_an_operator_killed_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """The operator SIGKILLed at random moments (6 times by default) while jobs (24) run to
    their ends (success, failure, a retried preemption each): every job ends right, no pod of an
    attempt is created twice, and none is left running or orphaned."""
    rng = random.Random(14)  # noqa: S311 (when to kill, not a secret: a seed keeps it replayable)
    with own_cluster(tmp_path / "cluster", POOL, audit_policy=POD_DELETES) as (
        cluster,
        api,
        operator,
    ):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        ledger = PodLedger(core)
        try:
            # Kind of end per job: 0 succeeds; 1 fails (ExitCode: the script's own
            # error); 137 is a preemption, retried as a new attempt that then succeeds.
            ends = {f"job-{i}": (0, 1, 137)[i % 3] for i in range(FAULT_JOBS)}
            create_jobs(custom, list(ends), "ExitCode")
            kills = 0
            pending = list(ends)
            rng.shuffle(pending)
            per_kill = -(-len(pending) // FAULT_KILLS)
            while pending or kills < FAULT_KILLS:
                batch, pending = pending[:per_kill], pending[per_kill:]
                for name in batch:
                    end_when_running(core, f"{name}-worker-0", ends[name])
                time.sleep(rng.uniform(0.0, 1.5))
                assert operator.process is not None
                operator.process.stop(grace_seconds=0)  # SIGKILL, mid-whatever
                kills += 1
                time.sleep(rng.uniform(0.0, 1.0))
                operator.start()
            # The preempted jobs' second attempts finish too.
            for name, code in ends.items():
                if code == 137:
                    wait_for_attempt(custom, name, 2)
                    end_when_running(core, f"{name}-worker-0", 0)
            wanted = {n: "Failed" if code == 1 else "Succeeded" for n, code in ends.items()}
            wait_for_states(custom, wanted, 120 + FAULT_JOBS, "every job's right end")
            processes.wait_until(
                lambda: (
                    not [
                        p
                        for p in core.list_namespaced_pod(NAMESPACE).items
                        if p.status.phase == "Running"
                    ]
                ),
                timeout=60,
                what="no pod left running",
            )
            jobs = {job: True for job in states(custom)}
            orphans = [
                p.metadata.name
                for p in core.list_namespaced_pod(NAMESPACE).items
                if (p.metadata.labels or {}).get("tfjob.dev/job-name") not in jobs
            ]
            assert orphans == []
            # Two pods of one (name, attempt): the operator's fault only if it had deleted the
            # first itself. kwok 0.8 confirms a deletion with a DELETE by name, without the uid
            # precondition a kubelet sends; a late one can remove the next attempt's new pod
            # of the same name, which the operator then rightly makes again.
            by_operator, by_others = pod_deletes(cluster.audit_log)
            twice = ledger.twice()
            made_again = {}
            for key, uids in ledger.uids.items():
                if key in twice:
                    removed = [uid for uid in uids if uid in by_others and uid not in by_operator]
                    if len(uids) - len(removed) <= 1:
                        made_again[key] = by_others[removed[0]]
            assert {key: n for key, n in twice.items() if key not in made_again} == {}
            print(
                f"\nfault: operator SIGKILLed {kills} times over {len(ends)} jobs; all ended "
                f"right; {len(ledger.uids)} (pod, attempt) pairs, 0 created twice by the "
                f"operator, 0 orphans, 0 left running; {len(made_again)} made again after "
                f"another client's DELETE without a uid removed them "
                f"({sorted(set(made_again.values()))})"
            )
        finally:
            ledger.stop()


def end_when_running(core: k8s.CoreV1Api, pod: str, code: int) -> None:
    control.wait_for_pod_phase(core, NAMESPACE, pod, "Running", timeout=60)
    control.end_pod(core, NAMESPACE, pod, exit_code=code)


def wait_for_attempt(
    custom: k8s.CustomObjectsApi, job: str, attempt: int, timeout: float = 60
) -> None:
    def reached() -> bool:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, job)
        status = body.get("status") or {}
        return status.get("attempt") == attempt and status.get("state") == "Running"

    processes.wait_until(reached, timeout=timeout, what=f"{job} attempt {attempt}", interval=0.2)


def test_the_operator_rides_out_a_crash_of_the_api_server_and_etcd(tmp_path: Path) -> None:
    """kube-apiserver and etcd SIGKILLed while 6 jobs run, down 10 s, then started again: the
    same operator process reconnects by itself, every job ends as its pods say, a job created
    after the outage runs, and no pod was created twice."""
    with own_cluster(tmp_path / "cluster", POOL) as (cluster, api, operator):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        names = [f"job-{i}" for i in range(6)]
        create_jobs(custom, names, "Never")
        wait_for_states(custom, dict.fromkeys(names, "Running"), 60, "6 jobs Running")
        pid = operator.process.pid if operator.process else None

        cluster.kill_api()
        down = time.monotonic()
        time.sleep(10)
        cluster.start_api()
        outage = time.monotonic() - down

        # The same operator, never restarted, acts on what happens next.
        back = time.monotonic()
        ends = {name: (0 if i % 3 else 1) for i, name in enumerate(names)}
        for name, code in ends.items():
            control.end_pod(core, NAMESPACE, f"{name}-worker-0", exit_code=code)
        create_jobs(custom, ["after"], "Never")
        wanted = {n: "Failed" if code else "Succeeded" for n, code in ends.items()}
        wait_for_states(custom, wanted | {"after": "Running"}, 120, "every job's end")
        settled = time.monotonic() - back
        assert operator.process is not None
        assert operator.process.alive()
        assert operator.process.pid == pid

        log = operator.log()
        created = Counter(match.group(3) for match in CREATED.finditer(log))
        twice = {pod: n for pod, n in created.items() if n > 1}
        assert twice == {}, twice
        assert len(created) == 2 * len(names) + 2
        print(
            f"\nfault: API server and etcd down {outage:.1f} s (SIGKILL); all 6 jobs "
            f"ended right {settled:.1f} s after they came back; operator pid {pid} "
            f"never restarted; {len(created)} pods created, 0 twice"
        )


PEERING = "tfjob-faults"
PEERING_CRDS = (
    Path(__file__).resolve().parents[2] / "charts/tfjob-operator/crds/peerings.kopf.dev.yaml"
)
PASSES = re.compile(r"passes (paused|resumed) cluster-wide")
ACTS = re.compile(r": (created pod|Succeeded|Failed|Running|Created)\b")


def peer(cluster: LocalCluster, state_dir: Path, name: str, priority: int) -> OperatorProcess:
    """One replica of a peered operator, as the chart runs it (POD_ID names it)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_dir=state_dir,
        extra_args=[f"--peering={PEERING}", f"--priority={priority}"],
        env={"POD_ID": name},
    )


def install_peering(cluster: LocalCluster, custom: k8s.CustomObjectsApi) -> None:
    """kopf's peering CRDs and the cluster-wide peering object the replicas share."""
    for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
        cluster.install_crd(crd)
    custom.create_cluster_custom_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}},
    )


def turns(log: str) -> list[str]:
    return [match.group(1) for match in PASSES.finditer(log)]


def acted_while_paused(log: str) -> list[str]:
    """Lines of work a replica logged while its passes were paused (must be none)."""
    working, wrong = True, []
    for line in log.splitlines():
        turn = PASSES.search(line)
        if turn:
            working = turn.group(1) == "resumed"
        elif ACTS.search(line) and not working:
            wrong.append(line)
    return wrong


def wait_for_turn(process: OperatorProcess, count: int, turn: str, timeout: float) -> float:
    """Seconds until ``process`` logged its ``count``-th `turn` (paused or resumed)."""
    start = time.monotonic()
    processes.wait_until(
        lambda: turns(process.log()).count(turn) >= count,
        timeout=timeout,
        what=f"{process.env['POD_ID']} {turn} #{count}",
        interval=0.1,
    )
    return time.monotonic() - start


def test_two_replicas_killed_in_turn_never_both_work_and_fail_over_within_the_lifetime(
    tmp_path: Path,
) -> None:
    """Two peered replicas; the working one SIGKILLed, then (restarted below the other) the
    other: each time the survivor takes over once the dead one's peering record runs out (15 s),
    no replica acts while paused, and the jobs created and ended across both failovers end
    right with no pod created twice."""
    with own_cluster(tmp_path / "cluster", POOL) as (cluster, api, standalone):
        standalone.stop()  # replaced by two peered replicas
        custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
        install_peering(cluster, custom)
        ledger = PodLedger(core)
        first = peer(cluster, tmp_path / "a", "replica-a", 20)
        second = peer(cluster, tmp_path / "b", "replica-b", 10)
        again = peer(cluster, tmp_path / "a2", "replica-a-again", 5)
        try:

            def create(names: list[str]) -> None:
                create_jobs(custom, names, "Never")

            second.start()
            wait_for_turn(second, 1, "resumed", 30)  # alone, it works
            create([f"one-{i}" for i in range(4)])
            wait_for_states(custom, {f"one-{i}": "Running" for i in range(4)}, 60, "4 Running")
            first.start()
            wait_for_turn(first, 1, "resumed", 30)
            wait_for_turn(second, 2, "paused", 30)  # a higher priority came: it pauses
            # The paused one still knows these jobs and sees their pods: it must leave them.
            control.end_pod(core, NAMESPACE, "one-3-worker-0", exit_code=0)
            wait_for_states(custom, {"one-3": "Succeeded"}, 60, "one-3's end")

            failovers = []
            for dead, survivor, round_ in ((first, second, "one"), (second, again, "two")):
                resumed = turns(survivor.log()).count("resumed")
                assert dead.process is not None
                dead.process.stop(grace_seconds=0)  # SIGKILL: its peering record stays behind
                killed = time.monotonic()
                # Work arrives while nobody works: jobs end, a new one is created.
                for i in range(2):
                    control.end_pod(core, NAMESPACE, f"{round_}-{i}-worker-0", exit_code=i)
                create([f"{round_}-new"])
                wait_for_turn(survivor, resumed + 1, "resumed", 60)
                failovers.append(time.monotonic() - killed)
                wanted = {f"{round_}-0": "Succeeded", f"{round_}-1": "Failed"}
                wait_for_states(custom, wanted | {f"{round_}-new": "Running"}, 60, "ends")
                if round_ == "one":
                    again.start()  # back below the survivor: it waits its turn
                    wait_for_turn(again, 1, "paused", 30)
                    create([f"two-{i}" for i in range(2)])
                    wait_for_states(custom, {"two-0": "Running", "two-1": "Running"}, 60, "two")
                    assert turns(again.log()) == ["paused", "paused"]

            for name in ("one-2", "one-new", "two-new"):
                control.end_pod(core, NAMESPACE, f"{name}-worker-0", exit_code=0)
            wait_for_states(
                custom,
                dict.fromkeys(("one-2", "one-new", "two-new"), "Succeeded"),
                60,
                "the rest's ends",
            )
            logs = {p.env["POD_ID"]: p.log() for p in (first, second, again)}
            for name, log in logs.items():
                assert acted_while_paused(log) == [], name
            created = Counter(
                match.group(3) for log in logs.values() for match in CREATED.finditer(log)
            )
            assert {pod: n for pod, n in created.items() if n > 1} == {}
            assert ledger.twice() == {}
            lifetime = 15
            workers = sum(bool(CREATED.search(log)) for log in logs.values())
            assert all(seconds < lifetime + 5 for seconds in failovers), failovers
            print(
                f"\nfault: two peered replicas SIGKILLed in turn; failover "
                f"{failovers[0]:.1f} s and {failovers[1]:.1f} s (peering lifetime {lifetime} s); "
                f"{len(created)} pods created by {workers} replicas, 0 twice, 0 actions "
                "while paused"
            )
        finally:
            ledger.stop()
            for process in (first, second, again):
                process.stop()


def test_a_node_lost_under_running_jobs_restarts_them_whatever_their_policy(
    tmp_path: Path,
) -> None:
    """Two jobs' pods on one node; the node goes NotReady, then is deleted (the machine is
    gone). Kubernetes' pod garbage collector fails and removes the pods: a disruption, not a
    failure of the script, so both jobs (ExitCode, and Never too) run again as attempt 2 on
    the nodes that are left and succeed, the loss counted as a disruption and said why."""
    with own_cluster(tmp_path / "cluster", POOL) as (_, api, _operator):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        nodes = [node.metadata.name for node in core.list_node().items]
        victim = nodes[0]
        # Preferred, not required: the retried attempt goes to the nodes that are left.
        victim_first = {
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "preference": {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [victim],
                                    }
                                ]
                            },
                        }
                    ]
                }
            }
        }
        for name, policy in (("retried", "ExitCode"), ("never", "Never")):
            spec = replica(2, restartPolicy=policy)
            spec["template"]["spec"].update(victim_first)
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, kubeflow_job(name, {"Worker": spec})
            )
        wait_for_states(custom, {"retried": "Running", "never": "Running"}, 60, "both Running")

        lost = time.monotonic()
        control.set_node_not_ready(core, victim, reason="KernelPanic")
        control.wait_for_node_ready(core, victim, status="False")
        control.remove_node(core, victim)
        after = {}
        for name in ("retried", "never"):
            # The pod garbage collector removes a deleted node's pods once they have been
            # orphaned 40 s, looking every 20 s: some 56 s here, more on a loaded machine.
            wait_for_attempt(custom, name, 2, timeout=120)
            after[name] = time.monotonic() - lost
        for name in ("retried", "never"):
            body = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            counts = body["status"]["replicaStatuses"]["Worker"]
            assert counts.get("disruptions") == 1, counts
            assert "restarts" not in counts, counts
            (said,) = [
                e.message
                for e in core.list_namespaced_event(
                    NAMESPACE, field_selector=f"involvedObject.name={name}"
                ).items
                if e.reason == "TFJobRestarting"
            ]
            assert "removed by the pod garbage collector" in said, said
            # The second attempt runs on the nodes that are left, and ends right.
            control.wait_for_pod_phase(core, NAMESPACE, f"{name}-worker-0", "Running", timeout=60)
            placed = {
                pod.spec.node_name
                for pod in core.list_namespaced_pod(
                    NAMESPACE, label_selector=f"tfjob.dev/job-name={name}"
                ).items
            }
            assert victim not in placed, placed
            control.end_pod(core, NAMESPACE, f"{name}-worker-0", exit_code=0)
        wait_for_states(
            custom, {"retried": "Succeeded", "never": "Succeeded"}, 60, "both jobs' success"
        )
        print(
            f"\nfault: node {victim} NotReady then deleted under 2 jobs; the pod garbage "
            f"collector removed their pods; attempt 2 Running after "
            f"{after['retried']:.1f} s (ExitCode) and {after['never']:.1f} s (Never), then "
            "both Succeeded"
        )


def test_a_job_deleted_while_its_watch_was_broken_is_forgotten_when_it_lists_again(
    tmp_path: Path,
) -> None:
    """The operator frozen (SIGSTOP) while one job is deleted and another deleted and created
    again under its name, then etcd compacted and the API server restarted: its watches resume
    with 410 Gone and list again, and no DELETED event ever comes. The deleted job is forgotten
    (its pods are never made again under the dead owner) and the new one runs as a new job."""
    with own_cluster(tmp_path / "cluster", POOL) as (cluster, api, operator):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        create_jobs(custom, ["gone", "again"], "Never")
        wait_for_states(custom, {"gone": "Running", "again": "Running"}, 60, "2 jobs Running")
        old_uid = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "again")[
            "metadata"
        ]["uid"]
        assert operator.process is not None
        pid = operator.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for name in ("gone", "again"):
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, name, propagation_policy="Foreground"
                )
            processes.wait_until(
                lambda: not states(custom) and not pods_of(core, "gone", "again"),
                timeout=60,
                what="both jobs and their pods gone",
                interval=0.2,
            )
            create_jobs(custom, ["again"], "Never")
            revision = cluster.compact_etcd()
            cluster.kill_api()
            cluster.start_api()
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_for_states(custom, {"again": "Running"}, 90, "the new 'again' Running")
        job = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "again")
        assert job["metadata"]["uid"] != old_uid
        assert job["status"].get("attempt", 1) == 1
        # What a job the operator kept would do within seconds: make its pods again.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert pods_of(core, "gone") == [], "the deleted job's pods were made again"
            time.sleep(0.5)
        owners = {
            ref.uid for pod in pods_of(core, "again") for ref in pod.metadata.owner_references or []
        }
        assert owners == {job["metadata"]["uid"]}
        relisted = operator.log().count("410 Gone")
        assert relisted >= 1, "no watch of the operator listed again: the test proved nothing"
        print(
            f"\nfault: etcd compacted at revision {revision} and the API server restarted "
            f"under a frozen operator; it resumed, listed again ({relisted} watch(es) said "
            f"410 Gone), ran the new 'again' {time.monotonic() - resumed:.1f} s after, and "
            "made no pod of the deleted 'gone' in 15 s"
        )


def restarts_of(custom: k8s.CustomObjectsApi, job: str) -> int | None:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, job)
    workers = ((body.get("status") or {}).get("replicaStatuses") or {}).get("Worker") or {}
    return workers.get("restarts")


# One job under each restartScope, with backoffLimit 1: a failure counted twice fails it.
SCOPED = {"pod-scope": "Pod", "job-scope": "Job"}
FAILED = [f"{name}-worker-1" for name in SCOPED]


def start_a_job_per_scope(core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi) -> dict[str, str]:
    """The jobs of SCOPED, Running; the uid of each one's worker 1."""
    for name, scope in SCOPED.items():
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            kubeflow_job(
                name,
                {"Worker": replica(2, restartPolicy="ExitCode")},
                runPolicy={"restartScope": scope, "backoffLimit": 1},
            ),
        )
    wait_for_states(custom, dict.fromkeys(SCOPED, "Running"), 60, "both jobs Running")
    return {pod: core.read_namespaced_pod(pod, NAMESPACE).metadata.uid for pod in FAILED}


def fail_worker_1_and_wait_for_the_counts(
    core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi
) -> None:
    for pod in FAILED:
        end_when_running(core, pod, 137)
    processes.wait_until(
        lambda: all(restarts_of(custom, name) == 1 for name in SCOPED),
        timeout=60,
        what="both failures counted",
        interval=0.2,
    )


def wait_for_the_restarts_counted_once(
    core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi, before: dict[str, str]
) -> None:
    """Worker 1 made again in both jobs, attempt 2 for the Job scope, each failure once."""
    for pod in FAILED:
        control.wait_for_pod(
            core,
            NAMESPACE,
            pod,
            lambda p, pod=pod: p.metadata.uid != before[pod] and p.status.phase == "Running",
            timeout=120,
            what=f"{pod} made again",
        )
    wait_for_attempt(custom, "job-scope", 2)
    wait_for_states(custom, dict.fromkeys(SCOPED, "Running"), 60, "both jobs Running again")
    for name in SCOPED:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        assert restarts_of(custom, name) == 1, body["status"]
        assert not body["status"].get("replacing"), body["status"]
        assert body["status"].get("attempt", 1) == (2 if name == "job-scope" else 1)


def test_a_failure_is_counted_once_across_a_late_watch_and_a_relist_before_its_delete(
    tmp_path: Path,
) -> None:
    """Under restartScope Pod and Job: worker 1 exits 137 and the operator counts it, but an
    admission policy refuses the delete that follows. Then, between that count and the
    delete, the operator is frozen (SIGSTOP) for 20 s, so its watches fall that far behind;
    the policy goes, etcd is compacted and the API server restarted, so the watches resume
    with 410 Gone and list again. Each failure is still counted once (backoffLimit 1 would
    fail a job counted twice): the Pod-scope job replaces worker 1 alone, the Job-scope one
    runs as attempt 2."""
    with own_cluster(tmp_path / "cluster", POOL) as (cluster, api, operator):
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        before = start_a_job_per_scope(core, custom)
        assert operator.process is not None
        pid = operator.process.pid
        with DeletesRefused(api, NAMESPACE, *FAILED) as hold:
            fail_worker_1_and_wait_for_the_counts(core, custom)
            time.sleep(2)  # a delete or two refused
            os.kill(pid, signal.SIGSTOP)
            try:
                frozen = time.monotonic()
                hold.release()
                revision = cluster.compact_etcd()
                cluster.kill_api()
                cluster.start_api()
                time.sleep(max(0.0, 20 - (time.monotonic() - frozen)))
            finally:
                os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_for_the_restarts_counted_once(core, custom, before)
        relisted = operator.log().count("410 Gone")
        assert relisted >= 1, "no watch of the operator listed again: the test proved nothing"
        print(
            f"\nfault: 2 failures counted, their deletes refused, then the operator frozen "
            f"20 s while etcd was compacted (revision {revision}) and the API server restarted; "
            f"it listed again ({relisted} watch(es) said 410 Gone), replaced the pods "
            f"{time.monotonic() - resumed:.1f} s after, and counted each failure once"
        )


def test_a_failure_one_replica_counted_is_not_counted_again_by_the_one_that_takes_over(
    tmp_path: Path,
) -> None:
    """Two peered replicas, under restartScope Pod and Job with backoffLimit 1: the working one
    counts worker 1's 137, but an admission policy refuses its delete; then a replica of higher
    priority starts, so the first pauses between the count and the delete. The new one finds
    the failures counted on the status: it retries the delete, refused too, and once the
    policy goes replaces the pod (Pod) or runs attempt 2 (Job), counting nothing again, while
    the paused one does nothing at all."""
    with own_cluster(tmp_path / "cluster", POOL) as (cluster, api, standalone):
        standalone.stop()  # replaced by two peered replicas
        custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
        install_peering(cluster, custom)
        low = peer(cluster, tmp_path / "low", "replica-low", 10)
        high = peer(cluster, tmp_path / "high", "replica-high", 20)
        try:
            low.start()
            wait_for_turn(low, 1, "resumed", 30)
            before = start_a_job_per_scope(core, custom)
            with DeletesRefused(api, NAMESPACE, *FAILED):
                fail_worker_1_and_wait_for_the_counts(core, custom)
                high.start()
                wait_for_turn(low, 2, "paused", 30)  # between the count and the delete
                wait_for_turn(high, 1, "resumed", 30)
                time.sleep(8)  # the new replica's passes retry the delete, refused
                for pod in FAILED:
                    assert core.read_namespaced_pod(pod, NAMESPACE).metadata.uid == before[pod]
                assert all(restarts_of(custom, name) == 1 for name in SCOPED)
            wait_for_the_restarts_counted_once(core, custom, before)
            assert acted_while_paused(low.log()) == []
            print(
                "\nfault: 2 failures counted by one replica, their deletes refused, that "
                "replica paused for another; the other replaced them and counted each once"
            )
        finally:
            for process in (low, high):
                process.stop()


def pods_of(core: k8s.CoreV1Api, *jobs: str) -> list[k8s.V1Pod]:
    selector = f"tfjob.dev/job-name in ({','.join(jobs)})"
    return list(core.list_namespaced_pod(NAMESPACE, label_selector=selector).items)
