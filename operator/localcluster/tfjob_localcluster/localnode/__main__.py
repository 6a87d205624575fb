"""Run the local node agent: `python -m tfjob_localcluster.localnode --kubeconfig K ...` (root)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .agent import LocalNodeAgent


def _taint(text: str) -> dict[str, str]:
    """`key=value:Effect` or `key:Effect`."""
    key_value, _, effect = text.rpartition(":")
    key, _, value = key_value.partition("=")
    return {"key": key, "value": value, "effect": effect}


def _image(text: str) -> tuple[str, Path, Path]:
    pattern, _, rest = text.partition("=")
    bin_dir, _, workdir = rest.partition(":")
    return pattern, Path(bin_dir), Path(workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", default="local-0")
    parser.add_argument("--pool", default="local", help="value of the tfjob.dev/node-pool label")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--python-bin",
        type=Path,
        required=True,
        help="bin/ of the Python environment pods run in (their `python`)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="working directory of containers that set none (the 'image')",
    )
    parser.add_argument("--taint", action="append", default=[], type=_taint)
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        type=_image,
        help="GLOB=BIN_DIR:WORKDIR: containers whose image matches GLOB run with that Python "
        "environment and working directory (repeat; the first match wins)",
    )
    parser.add_argument("--bridge", default="tfjbr0")
    parser.add_argument("--subnet", default="10.250.0.0/24")
    parser.add_argument("--cluster-domain", default="cluster.local")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.geteuid() != 0:
        print("the local node needs root: it creates network namespaces", file=sys.stderr)
        return 2
    agent = LocalNodeAgent(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        state_dir=args.state_dir,
        python_bin=args.python_bin,
        workdir=args.workdir,
        images=args.image,
        labels={"tfjob.dev/node-pool": args.pool, "tfjob.dev/runtime": "local"},
        taints=args.taint,
        cluster_domain=args.cluster_domain,
        bridge=args.bridge,
        subnet=args.subnet,
    )
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker = threading.Thread(target=agent.run, daemon=True, name="agent")
    worker.start()
    while not stopped.wait(0.5):
        if not worker.is_alive():
            agent.shutdown()
            return 1
    agent.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
