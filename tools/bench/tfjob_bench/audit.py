"""Who wrote what: the API server's audit log, one identity per contestant, split at markers.

``apiserver_request_total`` has no user label, so writes are attributed from the audit log.
Writes are logged at Metadata level, reads and Leases not at all. The harness creates a marker
ConfigMap at each phase boundary; counting between two markers gives a phase's writes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
MARKER_NAMESPACE = "default"
MARKER_PREFIX = "bench-mark-"

POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],  # one line per request, at ResponseComplete
    "rules": [
        {"level": "None", "verbs": ["get", "list", "watch"]},
        # Node heartbeats: a constant background, the same for everyone.
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "Metadata", "verbs": list(WRITE_VERBS)},
        {"level": "None"},
    ],
}


@dataclass(frozen=True)
class Write:
    user: str
    verb: str
    resource: str  # resource or resource/subresource
    namespace: str
    name: str
    code: int
    received: float  # requestReceivedTimestamp, seconds since the epoch (server clock)
    completed: float  # stageTimestamp


def _timestamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_line(line: str) -> Write | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None  # a line cut by rotation
    if event.get("verb") not in WRITE_VERBS:
        return None
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return Write(
        user=(event.get("user") or {}).get("username", ""),
        verb=event["verb"],
        resource=resource,
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((event.get("responseStatus") or {}).get("code", 0)),
        received=_timestamp(event["requestReceivedTimestamp"]),
        completed=_timestamp(event["stageTimestamp"]),
    )


def read(audit_log: Path) -> list[Write]:
    """Every write in the log, rotated backups (``audit-<time>.log``) first."""
    files = sorted(audit_log.parent.glob(audit_log.stem + "-*" + audit_log.suffix))
    writes = []
    for path in [*files, audit_log]:
        if not path.exists():
            continue
        with path.open(errors="replace") as handle:
            for line in handle:
                write = parse_line(line)
                if write is not None:
                    writes.append(write)
    return writes


def is_marker(write: Write, label: str | None = None) -> bool:
    return (
        write.verb == "create"
        and write.resource == "configmaps"
        and write.namespace == MARKER_NAMESPACE
        and write.name.startswith(MARKER_PREFIX)
        and (label is None or write.name.endswith("-" + label))
    )


def between(writes: list[Write], start: str, end: str) -> list[Write]:
    """The writes after marker ``start`` and before marker ``end`` (in log order)."""
    inside = False
    selected = []
    for write in writes:
        if is_marker(write, start):
            inside = True
        elif is_marker(write, end):
            break
        elif inside:
            selected.append(write)
    return selected


@dataclass
class WriteCounts:
    by_verb_resource: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "409 create pods" ...

    @property
    def total(self) -> int:
        return sum(self.by_verb_resource.values())

    @property
    def without_events(self) -> int:
        return sum(n for key, n in self.by_verb_resource.items() if not key.endswith(" events"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "without_events": self.without_events,
            "by_verb_resource": dict(sorted(self.by_verb_resource.items())),
            "errors": dict(sorted(self.errors.items())),
        }


def count(writes: list[Write], user: str) -> WriteCounts:
    counts = WriteCounts()
    for write in writes:
        if write.user != user:
            continue
        key = f"{write.verb} {write.resource}"
        counts.by_verb_resource[key] += 1
        if write.code >= 400:
            counts.errors[f"{write.code} {key}"] += 1
    return counts


def induced(writes: list[Write], excluded_users: set[str]) -> Counter[str]:
    """Writes of everyone else (scheduler bindings, kwok status, KCM EndpointSlices...)."""
    return Counter(
        f"{w.user.removeprefix('system:serviceaccount:kube-system:')} {w.verb} {w.resource}"
        for w in writes
        if w.user not in excluded_users and not is_marker(w)
    )


def creation_window(
    writes: list[Write], namespace: str, first_user: str, first_resource: str | None
) -> tuple[float, float, int] | None:
    """Server-clock P1: first create of ``first_resource`` by ``first_user`` in ``namespace``
    to the last successful pod create there; and how many pods were created."""
    starts = [
        w.received
        for w in writes
        if w.namespace == namespace
        and w.user == first_user
        and w.verb == "create"
        and (first_resource is None or w.resource == first_resource)
    ]
    pods = [
        w.completed
        for w in writes
        if w.namespace == namespace and w.verb == "create" and w.resource == "pods"
        if 200 <= w.code < 300
    ]
    if not starts or not pods:
        return None
    return min(starts), max(pods), len(pods)


def decision_latencies(writes: list[Write], namespace: str, operator: str) -> list[float]:
    """Server-clock P2, per job in ``namespace``: the last write of its worker 0's pod status
    (kwok ending it) to the completion of ``operator``'s first status write of the job after
    it (a later count write is not the decision)."""
    ended: dict[str, float] = {}  # pod -> its last status write by someone else, completed
    status_writes: dict[str, list[Write]] = {}
    for write in writes:
        if write.namespace != namespace or not 200 <= write.code < 300:
            continue
        if write.resource == "pods/status" and write.user != operator:
            ended[write.name] = max(ended.get(write.name, 0.0), write.completed)
        elif (
            write.user == operator
            and write.resource.endswith("/status")
            and write.verb in ("patch", "update")
        ):
            status_writes.setdefault(write.name, []).append(write)
    latencies = []
    for job, jobs_writes in status_writes.items():
        end = ended.get(f"{job}-worker-0")
        if end is None:
            continue
        after = [w for w in jobs_writes if w.received >= end]
        if after:
            latencies.append(min(after, key=lambda w: w.received).completed - end)
    return latencies
