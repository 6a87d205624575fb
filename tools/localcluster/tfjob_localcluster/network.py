"""The local cluster's addresses and ranges, which the control plane and the real node share.

All of them live on this machine only: the simulated ranges are never routed, and the real
node's address sits on lo while it runs.
"""

from __future__ import annotations

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"  # kwok hands simulated pods addresses from here; nothing routes them
SIMULATED_NODE_IP = "10.243.0.1"
CLUSTER_DOMAIN = "cluster.local"
NODE_IP = "10.254.77.1"  # on lo while a real node runs; its cluster's pod-facing address
