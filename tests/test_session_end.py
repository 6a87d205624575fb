"""The end of a session that started the shared cluster: the last test stops it, in a time of
its own (a session fixture's teardown would count against whichever test ran last, a unit test
with 10 s, say), and finds the machine as the session found it."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.session import SESSION_CLUSTER
from tfjob_localcluster.network import NODE_IP

pytestmark = [pytest.mark.last, pytest.mark.timeout(180)]


def test_the_session_cluster_stops_and_leaves_the_machine_as_found(
    request: pytest.FixtureRequest,
) -> None:
    cluster = request.session.stash.get(SESSION_CLUSTER, None)
    if cluster is None:
        pytest.skip("no test of this session started the shared cluster")
    nodes = list(cluster.real_nodes)
    started = [*cluster.running, *(p for node in nodes for p in node.running)]

    cluster.stop()

    assert not [p.name for p in started if p.alive()]
    for node in nodes:
        assert not node.sockets.exists()
        # containerd's store, gigabytes of images and snapshots, goes with its node.
        assert not (node.state_dir / "containerd" / "root").exists()
        assert (node.state_dir / "logs" / f"kubelet-{node.name}.log").exists()
    if nodes:
        addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
        assert NODE_IP not in addresses.stdout
        assert not [n.bridge for n in nodes if n.bridge in addresses.stdout]
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True)
        assert "KUBE-" not in rules.stdout
