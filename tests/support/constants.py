"""Constants the tests share; the operator's own wire names come from tfjob_operator.api.labels,
never re-declared here."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
CRD_FILE = REPOSITORY / "crds" / "tensorflowjobs.tfjob.dev.yaml"
# Pods that ask for it (both) land on a cluster's real node, which runs them as containers of
# the project's images; the rest of the suite's pods only pretend to run, on kwok's nodes.
REAL_NODE_LABELS = {"tfjob.dev/node-pool": "real"}
REAL_NODE_TAINT = "tfjob.dev/real-node"
ON_REAL_NODE = {
    "nodeSelector": REAL_NODE_LABELS,
    "tolerations": [{"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
}
