"""`tfjob-local`: build what is missing, start or stop the local cluster, show where it is."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path

import yaml

from . import binaries
from . import images as images_cli
from .cluster import LocalCluster, default_state_dir
from .horovod_env import ensure_horovod_env
from .nodepools import load as load_node_pools
from .operator_process import LOCAL_NODE_ENV, OperatorProcess
from .trainer_env import ensure_trainer_env


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
    binaries.ensure_built()
    pools = load_node_pools(args.node_pools)
    trainer_bin = None
    images: dict[str, tuple[Path, Path]] = {}
    if pools.local_pools() and os.geteuid() != 0:
        print("Not root: the local pool's pods cannot run as real processes; simulating it.")
        pools = pools.simulated()
    elif pools.local_pools():
        trainer_bin = ensure_trainer_env()
        # Horovod (MPI) jobs' pods run in the Horovod environment, from its image's folder.
        horovod = args.workdir.resolve().parent / "horovod"
        if horovod.is_dir():
            images["*horovod*"] = (ensure_horovod_env(), horovod)
    cluster = LocalCluster(
        state_dir=state_dir,
        node_pools=pools,
        detach=True,
        trainer_bin=trainer_bin,
        workdir=args.workdir.resolve(),
        images=images,
    )
    cluster.start(timeout=args.timeout)
    if not args.no_operator:
        _start_operator(cluster, sample_job=not args.no_sample_job)
    pools_text = ", ".join(
        f"{p.name} ({p.count} x {f'{p.gpus} GPU' if p.gpus else 'CPU'}"
        f"{', real processes' if p.runtime == 'local' else ''})"
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
        env={"TFJOB_NODE_POOLS": json.dumps(pools), **LOCAL_NODE_ENV},
    )
    cluster.adopt(operator.start())
    print(f"Operator running (log: {cluster.log_dir / 'tfjob-operator.log'})")
    if sample_job:
        job = yaml.safe_load(resources.files(__package__).joinpath("sample-job.yaml").read_text())
        cluster.create_custom_object(job)
        print(
            f"Sample job submitted: kubectl get tfj {job['metadata']['name']}; "
            + (
                f"it trains on this machine: kubectl logs -f {job['metadata']['name']}-worker-0"
                if cluster.node_pools.local_pools()
                else "its pods only pretend to run: end one with "
                "`kubectl annotate pod <pod> sim.tfjob.dev/exit-code=0`"
            )
        )


def _print_usage(kubeconfig: Path) -> None:
    print("Point kubectl at it with:")
    print(f"  export KUBECONFIG={kubeconfig}")
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


def _build(args: argparse.Namespace) -> int:
    """The control plane's binaries, and the Python environment local pods run in."""
    environments = {"trainer-env": ensure_trainer_env, "horovod-env": ensure_horovod_env}
    components = [c for c in args.components if c not in environments]
    if components or not args.components:
        binaries.main(components)
    for name, ensure in environments.items():
        if not args.components or name in args.components:
            print(f"{name}: {ensure().parent}")
    return 0


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from .bench.cli import add_arguments

    add_arguments(parser)


def _bench(args: argparse.Namespace) -> int:
    from .bench.cli import main as bench_main

    return bench_main(args)


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
        "--workdir",
        type=Path,
        default=Path("images/trainer") if Path("images/trainer").is_dir() else Path.cwd(),
        help="working directory of local pods (the trainer image's): %(default)s",
    )
    up.add_argument("--no-operator", action="store_true", help="only the cluster, no operator")
    up.add_argument("--no-sample-job", action="store_true", help="do not submit the sample job")
    up.set_defaults(run=_up)
    commands.add_parser("down", help="stop the cluster").set_defaults(run=_down)
    commands.add_parser("status", help="show its processes").set_defaults(run=_status)
    build = commands.add_parser(
        "build",
        help="only build what is missing: binaries (etcd, kubernetes, kwok, helm; "
        "training-operator and kueue when named), trainer-env, horovod-env",
    )
    build.add_argument("components", nargs="*")
    build.set_defaults(run=_build)
    images = commands.add_parser(
        "images",
        help="build the project's images from images/*/Dockerfile with buildah (no registry)",
    )
    images_cli.add_arguments(images)
    images.set_defaults(run=images_cli.main)
    bench = commands.add_parser(
        "bench",
        help="the benchmark: limit, our operator and Kubeflow's, side by side on a fresh cluster",
    )
    _add_bench_arguments(bench)
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
