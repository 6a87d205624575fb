"""`tfjob-local`: build what is missing, start or stop the local cluster, show where it is."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path

import yaml

from . import binaries, host_packages
from . import images as images_cli
from .cluster import LocalCluster, default_state_dir
from .nodepools import load as load_node_pools
from .operator_process import OperatorProcess

TRAINER_IMAGE = images_cli.IMAGES["trainer-cpu"].tags[0]


def _up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    existing = LocalCluster.attach(state_dir)
    if existing is not None:
        if existing.alive():
            print(f"A local cluster is already running from {state_dir}.")
            _print_usage(state_dir / "kubeconfig")
            return 0
        existing.stop()  # leftovers of a cluster that half-died: clear them first
    # Every start makes a new CA and new identities, so nothing of an older cluster (its etcd
    # data, nodes and jobs included) could be used again: start from a clean state.
    LocalCluster(state_dir=state_dir).clear_state()
    pools = load_node_pools(args.node_pools)
    if pools.real_pools() and os.geteuid() != 0:
        print("Not root: this machine cannot be a real node; its pool is simulated too.")
        pools = pools.simulated()
    wanted = ["trainer-cpu", *(["horovod"] if args.horovod else [])] if pools.real_pools() else []
    if wanted:
        _ensure_host_packages()  # before minutes of building, not after
    binaries.ensure_built(
        [*binaries.DEFAULT_COMPONENTS, *(binaries.REAL_NODE_COMPONENTS if wanted else [])]
    )
    if wanted:
        print(f"Images for the real node: {', '.join(wanted)} (built once, then cached)")
        images_cli.build_images(wanted)
    cluster = LocalCluster(state_dir=state_dir, node_pools=pools, detach=True)
    cluster.start(timeout=args.timeout)
    for node in cluster.real_nodes:
        for name in wanted:
            node.load_image(images_cli.IMAGES[name].tags[0])
    if not args.no_operator:
        _start_operator(cluster, sample_job=not args.no_sample_job)
    pools_text = ", ".join(
        f"{p.name} ({p.count} x {f'{p.gpus} GPU' if p.gpus else 'CPU'}"
        f"{', this machine, real containers' if p.runtime == 'real' else ''})"
        for p in cluster.node_pools.pools
    )
    print(f"Local cluster ready in {cluster.startup_seconds['total']:.1f} s at {cluster.server}")
    print(f"Node pools: {pools_text}")
    print(f"Logs: {cluster.log_dir}")
    _print_usage(cluster.kubeconfig)
    return 0


def _start_operator(cluster: LocalCluster, *, sample_job: bool) -> None:
    """Install the CRD, run the operator beside the cluster and submit the sample job."""
    from tfjob_operator.api.crd import custom_resource_definition

    cluster.install_crd(custom_resource_definition())
    pools = {pool.name: {"gpu": pool.gpus > 0} for pool in cluster.node_pools.pools}
    operator = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_dir=cluster.log_dir,
        detach=True,
        # Estimator jobs without an image run the trainer image `make images` builds.
        env={"TFJOB_NODE_POOLS": json.dumps(pools), "TFJOB_DEFAULT_IMAGE": TRAINER_IMAGE},
    )
    cluster.adopt(operator.start())
    print(f"Operator running (log: {cluster.log_dir / 'tfjob-operator.log'})")
    if sample_job:
        job = yaml.safe_load(resources.files(__package__).joinpath("sample-job.yaml").read_text())
        cluster.create_custom_object(job)
        print(
            f"Sample job submitted: kubectl get tfj {job['metadata']['name']}; "
            + (
                "it trains in containers of the trainer image on this machine: "
                f"kubectl logs -f {job['metadata']['name']}-worker-0"
                if cluster.real_nodes
                else "its pods only pretend to run: end one with "
                "`kubectl annotate pod <pod> sim.tfjob.dev/exit-code=0`"
            )
        )


def _print_usage(kubeconfig: Path) -> None:
    print("Point kubectl at it with:")
    print(f"  export KUBECONFIG={kubeconfig}")
    # kubectl (and its `kubectl tfjob` plugin) come with this Python's environment.
    print(f"  export PATH={Path(binaries.kubectl()).parent}:$PATH")
    print("  kubectl get nodes -L tfjob.dev/node-pool,nvidia.com/gpu.product")
    print("Stop it with: tfjob-local down")


def _down(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(args.state_dir)
    if cluster is None:
        print(f"No local cluster recorded in {args.state_dir}.")
        return 0
    cluster.stop()
    print("Local cluster stopped.")
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(args.state_dir)
    if cluster is None:
        print("stopped")
        return 1
    for process in cluster.running:
        print(f"{process.name:<24} pid {process.pid:<8} {'running' if process.alive() else 'DEAD'}")
    return 0 if cluster.alive() else 1


def _ensure_host_packages() -> None:
    """Debian's packages for the images and the real node: installed as root, else named."""
    from .images import BUILD_TOOLS
    from .realnode import TOOLS

    host_packages.ensure({**BUILD_TOOLS, **TOOLS}, "building the images and running a real node")


def _packages(args: argparse.Namespace) -> int:
    try:
        _ensure_host_packages()
    except host_packages.MissingPackages as error:
        print(f"tfjob-local: {error}", file=sys.stderr)
        return 2
    return 0


def _build(args: argparse.Namespace) -> int:
    """The binaries of the control plane and of the real node."""
    return binaries.main(
        args.components or [*binaries.DEFAULT_COMPONENTS, *binaries.REAL_NODE_COMPONENTS]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfjob-local", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="where the cluster keeps its certificates, data and logs (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build missing binaries, start the cluster")
    up.add_argument("--node-pools", type=Path, default=None, help="node-pool YAML file")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.add_argument(
        "--horovod",
        action="store_true",
        help="also build the Horovod image and load it into the real node (minutes, once)",
    )
    up.add_argument("--no-operator", action="store_true", help="only the cluster, no operator")
    up.add_argument("--no-sample-job", action="store_true", help="do not submit the sample job")
    up.set_defaults(run=_up)
    commands.add_parser("down", help="stop the cluster").set_defaults(run=_down)
    commands.add_parser("status", help="show its processes").set_defaults(run=_status)
    commands.add_parser(
        "packages",
        help="install Debian's packages the images and the real node need (as root; "
        "otherwise name them and exit 2)",
    ).set_defaults(run=_packages)
    build = commands.add_parser(
        "build",
        help="only build what is missing: binaries (etcd, kubernetes, kwok, helm, and the real "
        "node's kubernetes-node and coredns; training-operator and kueue when named)",
    )
    build.add_argument("components", nargs="*")
    build.set_defaults(run=_build)
    images = commands.add_parser(
        "images",
        help="build the project's images from images/*/Dockerfile with buildah (no registry)",
    )
    images_cli.add_arguments(images)
    images.set_defaults(run=images_cli.main)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
