"""The benchmark's pure parts: audit attribution, percentiles, the workload, Kubeflow's certs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tfjob_bench import audit, kubeflow, report, workload
from tfjob_bench.rounds import ratio_to_limit, spread
from tfjob_bench.runner import Bench, BenchConfig, ContestantResult, log_errors, percentile


def _line(user: str, verb: str, resource: str, name: str, code: int = 201, **ref: str) -> str:
    return json.dumps(
        {
            "verb": verb,
            "user": {"username": user},
            "objectRef": {"resource": resource, "name": name, **ref},
            "responseStatus": {"code": code},
            "requestReceivedTimestamp": "2026-11-30T10:00:00.000100Z",
            "stageTimestamp": "2026-11-30T10:00:00.002100Z",
        }
    )


def test_writes_are_counted_per_identity_between_markers() -> None:
    marker = {"namespace": audit.MARKER_NAMESPACE}
    lines = [
        _line("op", "create", "pods", "before"),
        _line("driver", "create", "configmaps", "bench-mark-001-ours-start", **marker),
        _line("op", "create", "pods", "a", namespace="ns"),
        _line("op", "create", "pods", "a", code=409, namespace="ns"),
        _line("op", "update", "tensorflowjobs", "j", subresource="status"),
        _line("kwok", "patch", "pods", "a", subresource="status"),
        _line("driver", "create", "configmaps", "bench-mark-002-ours-end", **marker),
        _line("op", "create", "pods", "after"),
        "not json",
    ]
    writes = [w for w in map(audit.parse_line, lines) if w is not None]
    counts = audit.count(audit.between(writes, "ours-start", "ours-end"), "op")
    assert counts.by_verb_resource == {"create pods": 2, "update tensorflowjobs/status": 1}
    assert counts.errors == {"409 create pods": 1}
    assert counts.total == 3


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([3.0], 99) == 3.0


def test_every_tenth_job_fails_and_jobs_differ_only_in_kind() -> None:
    assert [i for i in range(30) if workload.fails(i, 10)] == [9, 19, 29]
    ours = workload.job(workload.OURS, "job-00001", "ns", 4, "run")
    theirs = workload.job(workload.KUBEFLOW, "job-00001", "ns", 4, "run")
    assert ours["spec"] == theirs["spec"]
    assert ours["spec"]["runPolicy"] == {"cleanPodPolicy": "None"}
    pod_spec = ours["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert "resources" not in pod_spec["containers"][0]  # placed, not requesting GPUs


def test_the_limit_renders_the_operators_own_children() -> None:
    body = workload.job(workload.OURS, "job-00000", "ns", 3, "run")
    children = workload.render_children(body, "uid-1")
    assert [plural for plural, _ in children] == ["services", "pods", "pods", "pods"]
    for _, child in children:
        assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    names = [c["metadata"]["name"] for p, c in children if p == "pods"]
    assert names == [workload.worker_pod_name("job-00000", i) for i in range(3)]


def test_children_rendered_ahead_carry_the_created_jobs_uid_and_no_stand_in() -> None:
    body = workload.job(workload.OURS, "job-00000", "ns", 3, "run")
    children = workload.owned_by(workload.render_children(body, "stand-in"), "real-uid")
    assert "stand-in" not in json.dumps(children)
    assert {c["metadata"]["ownerReferences"][0]["uid"] for _, c in children} == {"real-uid"}


def test_kubeflow_certificates_have_pkcs1_keys_and_its_service_name() -> None:
    files = kubeflow.webhook_certificates()
    for key in ("ca.key", "tls.key"):
        assert files[key].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(files["tls.crt"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [kubeflow.SERVICE_DNS]
    serialization.load_pem_private_key(files["tls.key"], password=None)


def test_error_lines_of_both_logs_are_found() -> None:
    text = "\n".join(
        [
            "[2026-11-30 10:00:00,000] kopf.objects [ERROR   ] Handler failed",
            "2026-11-30T10:00:00Z\tERROR\tReconciler error\t{}",
            '2026-11-30T10:00:00Z\tDEBUG\thealthz\t{"error": "not ready"}',
            "Traceback (most recent call last):",
            "[2026-11-30 10:00:00,000] kopf.objects [INFO    ] fine",
        ]
    )
    assert len(log_errors(text)) == 3


def test_the_benchmarks_node_pool_file_ships_with_it() -> None:
    """The bench's own pool file is found wherever the bench is installed."""
    pools = Bench(BenchConfig(nodes=7, out=Path("unused"))).node_pools()
    (pool,) = [p for p in pools.pools if p.name == workload.BENCH_POOL]
    assert pool.count == 7


def _result(name: str, number: int, p1: float, **fields: object) -> ContestantResult:
    return ContestantResult(
        name=name,
        identity=name,
        round=number,
        p1_seconds=p1,
        **fields,  # type: ignore[arg-type]
    )


def test_a_ratio_is_taken_within_its_round_then_summarised() -> None:
    # The limit is slow in round 2 and ours with it: per round, ours is 0.5, 0.5 and 2.0 times
    # the limit. Medians of each side apart (3.0 / 3.0) would say 1.0.
    rounds = [
        {"limit": _result("limit", 1, 2.0), "ours": _result("ours", 1, 1.0)},
        {"limit": _result("limit", 2, 12.0), "ours": _result("ours", 2, 6.0)},
        {"limit": _result("limit", 3, 3.0), "ours": _result("ours", 3, 6.0)},
    ]
    ratio = spread(rounds, "ours", ratio_to_limit(lambda r: r.p1_seconds))
    assert ratio is not None
    assert ratio.values == (0.5, 0.5, 2.0)
    assert ratio.format(2) == "0.50 [0.50, 2.00]"
    p1 = spread(rounds, "ours", lambda r, _: r.p1_seconds)
    assert p1 is not None
    assert p1.format(1) == "6.0 [1.0, 6.0]"


def test_a_failed_round_is_left_out_and_counted() -> None:
    failed = ContestantResult(name="ours", identity="ours", round=2, error="TimeoutError: x")
    rounds = [
        {"limit": _result("limit", 1, 2.0), "ours": _result("ours", 1, 1.0)},
        {"limit": _result("limit", 2, 2.0), "ours": failed},
    ]
    p1 = spread(rounds, "ours", lambda r, _: r.p1_seconds)
    assert p1 is not None
    assert p1.values == (1.0,)
    table = report.main_table(BenchConfig(jobs=10, out=Path("unused")), rounds)
    (row,) = [line for line in table if line.startswith("| ours |")]
    assert "| 1/2 |" in row  # rounds that worked, of all
    assert "| 1.00 |" in row  # P1 from round 1 alone, no spread


def test_the_report_shows_every_round_and_plots_them(tmp_path: Path) -> None:
    config = BenchConfig(jobs=2, pods_per_job=2, out=tmp_path, rounds=2)
    rounds = [
        {
            "limit": _result("limit", n, 1.0 * n, writes={"total": 6, "without_events": 6}),
            "ours": _result(
                "ours",
                n,
                0.8 * n,
                p2_succeeded=[0.05, 0.07],
                expected_succeeded=2,
                writes={
                    "total": 20,
                    "without_events": 16,
                    "by_verb_resource": {"create pods": 4, "create events": 4},
                },
            ),
        }
        for n in (1, 2)
    ]
    markdown, png = report.write(config, rounds, {"machine": "test"})
    text = markdown.read_text()
    assert "### ours, round 2" in text
    assert "| 2 | ours | 1.60 | 0.80 |" in text  # round 2's own row, its own ratio
    assert "| create pods |  | 2.00 |" in text  # per job, the rounds' median
    assert "| ours | 2/2 | 1.20 [0.80, 1.60] | 0.80 [0.80, 0.80] |" in text
    assert png.stat().st_size > 0
    saved = json.loads((tmp_path / report.JSON).read_text())
    assert [sorted(r) for r in saved["rounds"]] == [["limit", "ours"], ["limit", "ours"]]


def test_a_finished_job_costs_the_operator_a_fraction_of_a_running_one() -> None:
    from tfjob_bench import footprint

    sizes = footprint.measure(200, 2)
    assert sizes["finished job, frozen"] * 4 < sizes["running job, body and compiled spec"]
    # Frozen: little more than its JSON (and the record around it).
    assert sizes["finished job, frozen"] < 2 * sizes["job JSON"]
    assert 0 < sizes["pod observation, in the pod informer"] < 2000


def test_where_the_cluster_gang_schedules_the_limit_creates_the_operators_pod_group_first() -> None:
    body = workload.job(workload.OURS, "job-00000", "ns", 3, "run")
    children = workload.render_children(body, "uid-1", "scheduling.k8s.io/v1alpha2")
    kinds = [child["kind"] for _, child in children]
    assert sorted(kinds) == ["Pod", "Pod", "Pod", "PodGroup", "Service"]
    assert "PodGroup" in workload.CREATED_FIRST  # the limit creates it before the rest
    paths = {child["kind"]: workload.collection("ns", child) for _, child in children}
    assert paths == {
        "PodGroup": "/apis/scheduling.k8s.io/v1alpha2/namespaces/ns/podgroups",
        "Service": "/api/v1/namespaces/ns/services",
        "Pod": "/api/v1/namespaces/ns/pods",
    }
    (group,) = [child["metadata"]["name"] for _, child in children if child["kind"] == "PodGroup"]
    pods = [child for plural, child in children if plural == "pods"]
    assert {pod["spec"]["schedulingGroup"]["podGroupName"] for pod in pods} == {group}
    # Without the API, no PodGroup: the same as the operator on such a cluster.
    assert "PodGroup" not in [c["kind"] for _, c in workload.render_children(body, "uid-1")]


def test_p2_on_the_servers_clock_runs_from_worker_0s_end_to_the_next_status_write() -> None:
    def at(seconds: float) -> str:
        return f"2026-11-30T10:00:{seconds:06.3f}Z"

    def write(user: str, resource: str, name: str, received: float, done: float) -> audit.Write:
        line = json.dumps(
            {
                "verb": "patch",
                "user": {"username": user},
                "objectRef": {
                    "resource": resource.split("/")[0],
                    "subresource": resource.split("/")[1],
                    "name": name,
                    "namespace": "ns",
                },
                "responseStatus": {"code": 200},
                "requestReceivedTimestamp": at(received),
                "stageTimestamp": at(done),
            }
        )
        parsed = audit.parse_line(line)
        assert parsed is not None
        return parsed

    writes = [
        write("op", "tensorflowjobs/status", "j", 1.0, 1.01),  # Created
        write("admin", "pods/status", "j-worker-1", 2.0, 2.005),
        write("admin", "pods/status", "j-worker-0", 3.0, 3.010),  # worker 0 ends
        write("op", "tensorflowjobs/status", "j", 3.05, 3.07),  # Succeeded
        write("op", "tensorflowjobs/status", "j", 13.0, 13.01),  # a later count write
    ]
    (latency,) = audit.decision_latencies(writes, "ns", "op")
    assert abs(latency - 0.06) < 1e-6


def test_a_job_has_exactly_its_pods_but_those_seen_end_and_removed_since() -> None:
    """Past 12,500 ended pods the pod garbage collector removes them: not the operator's
    doing. A pod missing that never ended, or one too many, is."""

    class Pods:
        def __init__(self, names: list[str]) -> None:
            self.items = [
                {
                    "metadata": {
                        "name": n,
                        "ownerReferences": [
                            {"kind": "TensorFlowJob", "name": n.rsplit("-worker-", 1)[0]}
                        ],
                    }
                }
                for n in names
            ]

        async def list_all(self, path: str) -> tuple[list[dict], str]:
            return (self.items if path.endswith("/pods") else []), "1"

    bench = Bench(BenchConfig(pods_per_job=2))
    result = ContestantResult(name="ours", identity="ours", namespace="ns")
    api = Pods(
        ["a-worker-0", "b-worker-0", "b-worker-1", "c-worker-0", "c-worker-1", "c-worker-1x"]
    )
    api.items[-1]["metadata"]["ownerReferences"][0]["name"] = "c"  # a third pod of c
    ended = {"a-worker-1", "b-worker-1"}
    asyncio.run(bench.check_children(api, result, ["a", "b", "c", "d"], workload.OURS, ended))  # type: ignore[arg-type]
    assert result.jobs_with_wrong_pod_count == ["c: 3 pods", "d: 0 pods"]
