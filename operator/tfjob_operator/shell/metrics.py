"""Prometheus metrics of the operator, served by `tfjob-operator run --metrics-port PORT`.

Few and low in cardinality: no per-job or per-namespace labels, so a cluster with thousands of
jobs costs the same handful of series as one with none.
"""

from __future__ import annotations

from collections.abc import Hashable

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from tfjob_operator.api.v1alpha1 import ConditionType

# No `*_created` timestamp series beside every counter and histogram: noise for a scraper.
disable_created_metrics()

PREFIX = "tfjob_operator"
# A job the operator has seen but not yet given a condition (or one it cannot read).
UNKNOWN_STATE = "Unknown"
STATES = [*(c.value for c in ConditionType), UNKNOWN_STATE]

JOBS = Gauge(f"{PREFIX}_jobs", "TensorFlowJobs seen by this operator, by state.", ["state"])
RECONCILE_SECONDS = Histogram(
    f"{PREFIX}_reconcile_duration_seconds",
    "Time of one reconcile pass over a job, by result (success or error).",
    ["result"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_queue_depth", "Jobs waiting for a pass to start (triggered, not yet running)."
)
QUEUE_WAIT_SECONDS = Histogram(
    f"{PREFIX}_queue_wait_seconds",
    "Time from a job's trigger (an event about it or its children, a retry, a due look) to "
    "the start of its pass.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PODS_CREATED = Counter(
    f"{PREFIX}_pods_created", "Pods created by the operator, by replica type.", ["replica_type"]
)
RESTARTS = Counter(
    f"{PREFIX}_restarts",
    "Restarts of jobs' pods: pod (a pod replaced), job (every pod, as a new attempt), "
    "container (the kubelet's restarts the operator counted toward backoffLimit).",
    ["scope"],
)
API_ERRORS = Counter(
    f"{PREFIX}_api_errors",
    "Error answers of the API server to the operator's own calls, by verb, resource and HTTP "
    "status code (409 on create and 404 on delete are answers the operator expects).",
    ["verb", "resource", "code"],
)
CACHED = Gauge(
    f"{PREFIX}_cached_objects",
    "Children in the operator's caches, by resource: only those a TensorFlowJob controls.",
    ["resource"],
)
EVENTS_DROPPED = Counter(
    f"{PREFIX}_events_dropped",
    "Events not posted because more were waiting for one job than the outbox keeps (the "
    "oldest go; the job's status has the same news).",
)
PERMISSION_DENIED = Counter(
    f"{PREFIX}_permission_denied",
    "Reconcile passes stopped because RBAC forbids a call, by verb and resource.",
    ["verb", "resource"],
)


class JobStates:
    """The last state of every job this process reconciled, kept in the `jobs` gauge."""

    def __init__(self, gauge: Gauge = JOBS) -> None:
        self._gauge = gauge
        self._states: dict[Hashable, str] = {}
        for state in STATES:
            gauge.labels(state=state).set(0)

    def set(self, key: Hashable, state: str | None) -> None:
        new = state or UNKNOWN_STATE
        old = self._states.get(key)
        if old == new:
            return
        if old is not None:
            self._gauge.labels(state=old).dec()
        self._states[key] = new
        self._gauge.labels(state=new).inc()

    def seen(self, key: Hashable) -> None:
        """A job whose pass failed: counted as Unknown until a pass tells its state."""
        if key not in self._states:
            self.set(key, None)

    def forget(self, key: Hashable) -> None:
        old = self._states.pop(key, None)
        if old is not None:
            self._gauge.labels(state=old).dec()


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
    """Serve /metrics in a background thread; raises OSError if the port is taken."""
    start_http_server(port, addr=address)
