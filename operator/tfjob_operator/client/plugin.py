"""`kubectl tfjob`: submit a directory, follow a job's logs, wait for it, read its metrics.

Installed as `kubectl-tfjob`, so kubectl finds it on PATH (`kubectl tfjob ...`); it also runs
alone. It speaks to the cluster kubectl would (KUBECONFIG, the current context and its
namespace), and exits non-zero when the job it waits for fails.

    kubectl tfjob submit ./my-tf-proj --entry-script train.py -p batch-size=50 \\
        --backend mpi --node-count 2 --use-gpu --wait
    kubectl tfjob logs my-job --all -f      # every pod, each line prefixed by its pod
    kubectl tfjob wait my-job               # progress until it ends; exit 1 if it failed
    kubectl tfjob metrics my-job
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import yaml
from kubernetes import client as k8s
from kubernetes import config

from .sdk import Run, TensorFlow, job_state
from .submit import connect, submit_reporting


def _param(text: str) -> tuple[str, str | bool]:
    """`batch-size=50` (or `--batch-size=50`) -> ("--batch-size", "50"), the value as written;
    `no-cuda` alone (or `no-cuda=`) is a flag alone."""
    name, _, value = text.partition("=")
    if not name.startswith("-"):
        name = f"--{name}"
    return (name, value) if value else (name, True)


def _connect(args: argparse.Namespace) -> tuple[k8s.ApiClient, str]:
    return connect(args.kubeconfig, context=args.context, namespace=args.namespace)


def _submit(args: argparse.Namespace, out: TextIO) -> int:
    if args.file:
        if args.arguments:
            print(
                "kubectl tfjob submit: arguments after `--` are for --entry-script; with -f put "
                "them in the file's spec.arguments",
                file=sys.stderr,
            )
            return 2
        manifest = yaml.safe_load(Path(args.file).read_text())
        if args.name:
            manifest.setdefault("metadata", {})["name"] = args.name
    else:
        if not args.entry_script:
            print("kubectl tfjob submit: --entry-script (or -f FILE) is required", file=sys.stderr)
            return 2
        try:
            estimator = TensorFlow(
                entry_script=args.entry_script,
                script_params=dict(_param(p) for p in args.param),
                arguments=args.arguments,
                compute_target=args.compute_target,
                use_gpu=args.use_gpu,
                pip_packages=args.pip_package,
                pip_index_url=args.pip_index_url,
                pip_index_secret=args.pip_index_secret,
                node_count=args.node_count,
                process_count_per_node=args.process_count_per_node,
                worker_count=args.worker_count,
                parameter_server_count=args.parameter_server_count,
                distributed_backend=args.backend,
                image=args.image,
                pod_template=yaml.safe_load(Path(args.pod_template).read_text())
                if args.pod_template
                else None,
            )
        except (TypeError, ValueError, OSError, yaml.YAMLError) as error:
            print(f"kubectl tfjob submit: {error}; nothing was created", file=sys.stderr)
            return 2
        manifest = estimator.to_manifest(args.name or Path(args.directory or ".").absolute().name)
    if args.dry_run:
        out.write(yaml.safe_dump(manifest, sort_keys=False))
        return 0
    api, namespace = _connect(args)
    code, job = submit_reporting(
        api,
        manifest,
        namespace=namespace,
        source_directory=Path(args.directory) if args.directory else None,
        prog="kubectl tfjob submit",
    )
    if job is None:
        return code
    name = job["metadata"]["name"]
    print(f"tensorflowjob.tfjob.dev/{name} created", file=out)
    if args.wait:
        return _wait_for(Run(api, namespace, name), args.timeout, out)
    return 0


def _progress(run: Run, job: dict[str, Any]) -> str:
    """The job's state and its pods' counts (and what it waits for), in one line."""
    pods = run.pods()
    scheduled = sum(1 for p in pods if p.spec.node_name)
    running = sum(1 for p in pods if p.status.phase == "Running")
    done = sum(1 for p in pods if p.status.phase in ("Succeeded", "Failed"))
    status = job.get("status") or {}
    line = (
        f"{job_state(job):<10} pods: {len(pods)} created, {scheduled} scheduled, "
        f"{running} running, {done} done"
    )
    waiting = status.get("waiting") or []
    if waiting:
        line += f"  (waiting: {waiting[0]['pod']}: {waiting[0]['reason']})"
    return line


def _wait_for(run: Run, timeout: float | None, out: TextIO) -> int:
    """Print a line at each change of the job's state or of its pods' counts, until it ends
    (a client's poll, once a second)."""
    started = time.monotonic()
    last = ""
    while True:
        try:
            job = run.get_job()
        except k8s.ApiException as error:
            if error.status == 404:
                print(f"{run.name}: not found (deleted?)", file=out)
                return 1
            raise
        line = _progress(run, job)
        if line != last:  # a change, not just time passing
            print(f"{time.monotonic() - started:6.0f}s  {line}", file=out, flush=True)
            last = line
        state = job_state(job)
        if state == "Succeeded":
            metrics = (job.get("status") or {}).get("metrics")
            print(f"{run.name} succeeded" + (f"; metrics {metrics}" if metrics else ""), file=out)
            return 0
        if state == "Failed":
            failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
            print(f"{run.name} failed ({failed['reason']}): {failed['message']}", file=out)
            return 1
        if timeout is not None and time.monotonic() - started > timeout:
            print(f"kubectl tfjob wait: {run.name} did not end in {timeout:.0f} s", file=out)
            return 1
        time.sleep(1)


def _wait(args: argparse.Namespace, out: TextIO) -> int:
    api, namespace = _connect(args)
    return _wait_for(Run(api, namespace, args.job), args.timeout, out)


def _logs(args: argparse.Namespace, out: TextIO) -> int:
    api, namespace = _connect(args)
    run = Run(api, namespace, args.job)
    pods = [p.metadata.name for p in run.pods()] if args.all else [args.pod or run.deciding_pod()]
    if not pods:
        print(f"kubectl tfjob logs: {args.job} has no pods", file=sys.stderr)
        return 1
    lock = threading.Lock()

    def copy(pod: str) -> None:
        prefix = f"[{pod}] " if len(pods) > 1 or args.all else ""
        try:
            response = run.core.read_namespaced_pod_log(
                pod, namespace, follow=args.follow, _preload_content=False
            )
        except k8s.ApiException as error:
            with lock:
                print(f"{prefix}(no log: {error.reason})", file=out)
            return
        pending = b""
        try:
            for chunk in response.stream():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                with lock:
                    for line in lines:
                        out.write(prefix + line.decode(errors="replace") + "\n")
                    out.flush()
        finally:
            response.release_conn()
        if pending:
            with lock:
                out.write(prefix + pending.decode(errors="replace") + "\n")

    threads = [threading.Thread(target=copy, args=(pod,), daemon=True) for pod in pods]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


def _metrics(args: argparse.Namespace, out: TextIO) -> int:
    api, namespace = _connect(args)
    metrics = Run(api, namespace, args.job).get_metrics()
    if not metrics:
        print(f"{args.job} has reported no metrics (yet)", file=out)
        return 1
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        print(f"{name:<{width}}  {value:g}", file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl tfjob", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", default=None, help="default: the context's")
    common.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, then ~")
    common.add_argument("--context", default=None, help="default: the current context")
    commands = top.add_subparsers(dest="command", required=True)

    sub = commands.add_parser(
        "submit",
        parents=[common],
        help="submit a directory or a file",
        usage="kubectl tfjob submit [DIRECTORY] [options] [-- SCRIPT_ARGUMENT ...]",
        epilog="Everything after `--` reaches the script as written, after the -p flags.",
    )
    sub.add_argument("directory", nargs="?", help="the source directory to ship with the job")
    sub.add_argument("-f", "--file", help="a TensorFlowJob YAML instead of the options below")
    sub.add_argument("--name", help="the job's name (default: the directory's)")
    sub.add_argument("--entry-script", help="the script to run, relative to the directory")
    sub.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a script parameter: batch-size=50 passes --batch-size 50, no-cuda passes "
        "--no-cuda alone (repeat for more, in order; after `--`, the script's own arguments "
        "as written)",
    )
    sub.add_argument("--backend", help="mpi, ps or multiWorkerMirrored (default: one node)")
    sub.add_argument("--node-count", type=int, default=1)
    sub.add_argument("--process-count-per-node", type=int, default=1)
    sub.add_argument("--worker-count", type=int, default=None)
    sub.add_argument("--parameter-server-count", type=int, default=None)
    sub.add_argument("--use-gpu", action="store_true")
    sub.add_argument("--compute-target", help="the GPU node pool")
    sub.add_argument("--pip-package", action="append", default=[], help="repeat for more")
    sub.add_argument("--pip-index-url", help="the index pip packages come from (default: PyPI)")
    sub.add_argument(
        "--pip-index-secret", help="a basic-auth Secret (username, password) for that index"
    )
    sub.add_argument("--image", help="the trainer image (default: the operator's)")
    sub.add_argument(
        "--pod-template",
        metavar="FILE",
        help="YAML merged into every pod, the job's spec.template (volumes, tolerations...)",
    )
    sub.add_argument("--dry-run", action="store_true", help="print the job, create nothing")
    sub.add_argument("--wait", action="store_true", help="then wait for its end, as `wait`")
    sub.add_argument("--timeout", type=float, default=None)
    sub.set_defaults(handler=_submit)

    wait = commands.add_parser("wait", parents=[common], help="show progress until the job ends")
    wait.add_argument("job")
    wait.add_argument("--timeout", type=float, default=None, help="seconds (default: no limit)")
    wait.set_defaults(handler=_wait)

    logs = commands.add_parser("logs", parents=[common], help="the log of a job's pods")
    logs.add_argument("job")
    logs.add_argument("--pod", help="one pod (default: the one that decides the job)")
    logs.add_argument("--all", action="store_true", help="every pod, lines prefixed by pod")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(handler=_logs)

    metrics = commands.add_parser("metrics", parents=[common], help="the job's final metrics")
    metrics.add_argument("job")
    metrics.set_defaults(handler=_metrics)
    return top


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `submit ... -- ARG...`: the script's own command line, kept whole and in order (argparse
    # would take its options for ours, or refuse positionals after the source directory).
    script_arguments: list[str] = []
    if argv[:1] == ["submit"] and "--" in argv:
        cut = argv.index("--")
        argv, script_arguments = argv[:cut], argv[cut + 1 :]
    args = parser().parse_args(argv)
    args.arguments = script_arguments
    try:
        return int(args.handler(args, out))
    except config.ConfigException as error:
        print(f"kubectl tfjob: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
