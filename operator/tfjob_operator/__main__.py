"""`tfjob-operator`: run the operator, or show what an estimator-style job compiles to."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

import yaml


def _run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        # Before any import of the kubernetes client, which reads it once, at import time.
        os.environ["KUBECONFIG"] = args.kubeconfig
    import kopf

    from .settings import OperatorSettings
    from .shell import handlers, metrics  # noqa: F401 - importing handlers registers them with kopf

    operator_settings = OperatorSettings.from_environment(
        {
            "cluster_domain": args.cluster_domain,
            "default_gpu_node_pool": args.default_gpu_node_pool,
            "node_pool_label": args.node_pool_label,
            "manage_admission_policy": args.manage_admission_policy,
            "cluster_scanning": args.cluster_scanning,
            "max_concurrent_passes": args.max_concurrent_passes,
            "gang_scheduling": args.gang_scheduling,
            "queueing": args.queueing,
            "package_index_url": args.package_index_url,
            "package_index_secret": args.package_index_secret,
        }
    )
    debug = args.verbose or args.log_level == "debug"
    kopf.configure(
        verbose=debug,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel("DEBUG" if debug else args.log_level.upper())
    if not debug:
        # kopf reports every handled watch event at INFO; ours are the interesting lines.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        try:
            metrics.serve(args.metrics_port, args.metrics_address)
        except OSError as error:
            print(
                f"tfjob-operator: cannot serve metrics on {args.metrics_address}:"
                f"{args.metrics_port}: {error}",
                file=sys.stderr,
            )
            return 2
    peering = None
    if args.peering:
        from .shell.peering import PeeringSetup, own_identity

        if any(c in n for n in args.namespace or () for c in "*?[!"):
            print(
                "tfjob-operator: --peering needs literal --namespace names (or none): with "
                "patterns, kopf keeps a peering per matching namespace",
                file=sys.stderr,
            )
            return 2
        peering = PeeringSetup(args.peering, own_identity(), args.priority, args.peering_lifetime)
    kopf.run(
        memo=kopf.Memo(
            settings=operator_settings,
            kubeconfig=args.kubeconfig,
            namespaces=args.namespace,
            peering=peering,
        ),
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering,
        priority=args.priority,
        identity=peering.identity if peering else None,
        liveness_endpoint=args.liveness,
    )
    return 0


def _priority(text: str) -> int:
    """A peering priority; `random` draws one, so replicas of one Deployment never tie."""
    if text == "random":
        return secrets.randbelow(2**31 - 1) + 1
    return int(text)


# What compile keeps of a job's metadata: who the job is, not what the cluster wrote of it.
_IDENTITY = ("name", "namespace", "uid", "labels", "annotations")


def _compile(args: argparse.Namespace) -> int:
    import datetime as dt

    from pydantic import ValidationError

    from .core.compile import describe_validation_error
    from .core.decide import children_of_new_job
    from .core.estimator import compiled_job
    from .settings import OperatorSettings

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    settings = OperatorSettings.from_environment()
    documents = [d for d in yaml.safe_load_all(text) if d]
    out = []
    for job in documents:
        name = (job.get("metadata") or {}).get("name", "?")
        try:
            out.append(compiled_job(job, settings))
        except ValidationError as error:
            print(
                f"tfjob-operator compile: {name}: {describe_validation_error(error)}",
                file=sys.stderr,
            )
            return 2
        if args.pods:
            # What the operator creates for this job, built by the operator's own passes. A
            # job read back from the cluster (kubectl get -o yaml) keeps its uid and its MPI
            # key Secret's name, so the names it prints are the ones it really has.
            metadata = {
                "namespace": "default",
                "uid": "<uid>",
                **{k: v for k, v in (job.get("metadata") or {}).items() if k in _IDENTITY},
            }
            status = {k: v for k, v in (job.get("status") or {}).items() if k == "sshSecret"}
            new_job = {k: v for k, v in job.items() if k != "status"} | {"metadata": metadata}
            if status:
                new_job["status"] = status
            compiled, children = children_of_new_job(new_job, settings, dt.datetime.now(dt.UTC))
            if compiled.problem is not None:
                print(
                    f"tfjob-operator compile: {name}: {compiled.problem.message}", file=sys.stderr
                )
                return 2
            out.extend(children)
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from kubernetes import config

    from .client.submit import connect, submit_reporting

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    manifest = yaml.safe_load(text)
    try:
        api, namespace = connect(
            args.kubeconfig,
            namespace=args.namespace or (manifest.get("metadata") or {}).get("namespace"),
        )
    except config.ConfigException as error:
        print(f"tfjob-operator submit: {error}", file=sys.stderr)
        return 2
    code, job = submit_reporting(
        api,
        manifest,
        namespace=namespace,
        source_directory=Path(args.source) if args.source else None,
        prog="tfjob-operator submit",
    )
    if job is not None:
        print(f"tensorflowjob.tfjob.dev/{job['metadata']['name']} created in {namespace}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfjob-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeat; globs allowed); default: all",
    )
    run.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster, then ~)")
    run.add_argument("--cluster-domain", default=None, help="DNS domain (cluster.local)")
    run.add_argument("--default-gpu-node-pool", default=None, help="pool for GPU pods")
    run.add_argument("--node-pool-label", default=None, help="node label naming the pool")
    run.add_argument(
        "--manage-admission-policy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="install the node-pool admission policy at startup (default: yes)",
    )
    run.add_argument(
        "--cluster-scanning",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="watch CRDs and namespaces cluster-wide (default: yes; no for namespaced RBAC)",
    )
    run.add_argument(
        "--max-concurrent-passes",
        type=int,
        default=None,
        help="passes over different jobs that run at once (default: 256)",
    )
    run.add_argument(
        "--gang-scheduling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a PodGroup per distributed job, where the cluster serves the API (default: yes)",
    )
    run.add_argument(
        "--queueing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="act on a job's Kueue queue through Kueue's pod groups (default: yes)",
    )
    run.add_argument(
        "--package-index-url", default=None, help="index of jobs' pipPackages (default: PyPI)"
    )
    run.add_argument(
        "--package-index-secret", default=None, help="basic-auth Secret for that index"
    )
    run.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("TFJOB_METRICS_PORT") or 0),
        help="serve Prometheus metrics at :PORT/metrics (default: off; the chart uses 8081)",
    )
    run.add_argument(
        "--metrics-address",
        default=os.environ.get("TFJOB_METRICS_ADDRESS", "0.0.0.0"),  # noqa: S104 - a pod port
        help="address to serve metrics on (default: %(default)s)",
    )
    run.add_argument("--peering", default=None, help="kopf peering name (for several replicas)")
    run.add_argument(
        "--priority",
        type=_priority,
        default=0,
        help="peering priority (an integer, or `random`): the highest live one works",
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=int(os.environ.get("TFJOB_PEERING_LIFETIME") or 15),
        help=(
            "seconds a replica's peering record lasts unrenewed (renewed every 5-10 s): how "
            "long the others wait after a replica is killed (default: %(default)s)"
        ),
    )
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("TFJOB_LOG_FORMAT", "text"),
        help="json: one JSON object per line (default: %(default)s)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=os.environ.get("TFJOB_LOG_LEVEL", "info"),
        help="default: %(default)s",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="same as --log-level debug")
    run.set_defaults(handler=_run)
    compile_ = commands.add_parser(
        "compile", help="print the Kubeflow-form job (and with --pods, its pods) a file becomes"
    )
    compile_.add_argument("-f", "--file", required=True, help="TensorFlowJob YAML, or -")
    compile_.add_argument("--pods", action="store_true", help="also print service and pods")
    compile_.set_defaults(handler=_compile)
    submit_ = commands.add_parser(
        "submit", help="create a job from a file, shipping a local source directory with it"
    )
    submit_.add_argument("-f", "--file", required=True, help="TensorFlowJob YAML, or -")
    submit_.add_argument(
        "--source",
        default=None,
        metavar="DIR",
        help="a directory with entryScript: packed (at most 1,000,000 bytes) and unpacked "
        "into the pods' working directory",
    )
    submit_.add_argument("-n", "--namespace", default=None, help="default: the context's")
    submit_.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, then ~")
    submit_.set_defaults(handler=_submit)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
