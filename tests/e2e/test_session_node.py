"""The session cluster's real node steps aside for a test that runs a node of its own (one real
node per machine) and comes back with the images it held: the tests after it run them, and no
registry would give them again."""

from __future__ import annotations

import subprocess

import pytest

from tfjob_localcluster.cluster import LocalCluster
from tfjob_localcluster.realnode import RealNode

pytestmark = pytest.mark.timeout(300)


def _images(node: RealNode) -> set[str]:
    listed = subprocess.run(
        ["ctr", "--address", str(node.socket), "--namespace", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(listed.stdout.split())


def test_the_session_node_steps_aside_and_comes_back_with_its_images(
    cluster: LocalCluster, real_node: RealNode, trainer_image: str
) -> None:
    assert trainer_image in _images(real_node)
    with cluster.real_nodes_stopped():
        assert not real_node.alive()
        assert not real_node.socket.exists()
    assert real_node.alive()
    assert trainer_image in _images(real_node)
