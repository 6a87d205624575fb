"""A control plane of a test's own, with the CRD and an operator: for tests that break or
reconfigure what the session's shared cluster must keep (faults, feature gates)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.support.constants import CRD_FILE
from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.nodepools import NodePool, NodePools
from tfjob_localcluster.operator_process import OperatorProcess


@contextmanager
def own_cluster(
    state_dir: Path,
    pool: NodePool,
    *,
    gang_scheduling: bool = True,
    audit_policy: dict[str, Any] | None = None,
    pod_facing_address: str | None = None,
) -> Iterator[tuple[LocalCluster, k8s.ApiClient, OperatorProcess]]:
    """The cluster (one node pool), an admin client, and the operator, running; all stopped
    after. ``audit_policy``: the API server's audit log, at ``cluster.audit_log``;
    ``pod_facing_address``: where a real node's pods reach the API server."""
    cluster = LocalCluster(
        state_dir=state_dir,
        node_pools=NodePools(pools=[pool]),
        gang_scheduling=gang_scheduling,
        audit_policy=audit_policy,
        pod_facing_address=pod_facing_address,
    )
    cluster.start()
    try:
        with cluster.api_client() as api:
            cluster.install_crd(yaml.safe_load(CRD_FILE.read_text()))
            operator = OperatorProcess(kubeconfig=cluster.kubeconfig, log_dir=cluster.log_dir)
            operator.start()
            try:
                yield cluster, api, operator
            finally:
                operator.stop()
    finally:
        cluster.stop()
