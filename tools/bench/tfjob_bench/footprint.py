"""What the operator keeps in memory per job and per pod, measured on its own classes.

`python -m tfjob_bench.footprint [--jobs N] [--workers W]` feeds N jobs of W workers (the
benchmark's workload, with a finished job's status, and pods as the API server returns them)
through the controller's and the informer's own code, and prints the bytes Python allocated
per job and per pod, from tracemalloc:

- a running job: its body as the watch showed it, and its compiled spec;
- a finished job: the same, once frozen (see ``JobState.freeze``);
- a pod: its observation in the pod informer, with the informer's bookkeeping;
- a Service: its entry in the Service informer.

No cluster: the figures are the cache's, not the process's (the interpreter, the libraries
and the allocator's slack come on top; ``make bench-history`` measures those).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import tracemalloc
from typing import Any

from tfjob_operator.api.labels import JOB_NAME_LABEL
from tfjob_operator.core.compile import compile_job
from tfjob_operator.core.observed import PodObservation, controlled_by_a_job
from tfjob_operator.settings import OperatorSettings
from tfjob_operator.shell.controller import JobState, kept
from tfjob_operator.shell.informer import Informer

from . import workload


def finished_job(index: int, workers: int) -> dict[str, Any]:
    """A job of the benchmark's workload as the API server returns it once it Succeeded."""
    body = workload.job(workload.OURS, f"done-{index:05d}", "history", workers, "history")
    name = body["metadata"]["name"]
    body["metadata"] |= {
        "uid": f"00000000-0000-4000-8000-{index:012d}",
        "resourceVersion": str(100000 + index),
        "generation": 1,
        "creationTimestamp": "2026-12-07T21:00:00Z",
    }
    conditions = [
        ("Created", "True", "TFJobCreated", f"TFJob history/{name} is created."),
        ("Running", "False", "TFJobSucceeded", f"TFJob history/{name} successfully completed."),
        ("Succeeded", "True", "TFJobSucceeded", f"TFJob history/{name} successfully completed."),
    ]
    body["status"] = {
        "conditions": [
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-12-07T21:00:05Z",
                "lastUpdateTime": "2026-12-07T21:00:05Z",
            }
            for kind, status, reason, message in conditions
        ],
        "replicaStatuses": {"Worker": {"succeeded": workers}},
        "startTime": "2026-12-07T21:00:00Z",
        "completionTime": "2026-12-07T21:00:05Z",
        "ready": f"0/{workers}",
        "attempt": 1,
        "state": "Succeeded",
        "observedGeneration": 1,
    }
    return body


def new(job: dict[str, Any]) -> dict[str, Any]:
    """The job as created, before any status: what its first pass builds from."""
    return {k: v for k, v in job.items() if k != "status"}


def pods_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's pods as the operator creates them, as the API server returns them ended."""
    uid = job["metadata"]["uid"]
    pods: list[dict[str, Any]] = []
    for plural, child in workload.render_children(new(job), uid):
        if plural != "pods":
            continue
        pod = copy.deepcopy(child)
        pod["metadata"] |= {
            "uid": f"{uid}-{len(pods)}",
            "resourceVersion": "200000",
            "creationTimestamp": "2026-12-07T21:00:00Z",
        }
        pod["spec"]["nodeName"] = "gpu-bench-0"
        pod["status"] = {
            "phase": "Succeeded",
            "conditions": [
                {"type": kind, "status": "False", "lastTransitionTime": "2026-12-07T21:00:05Z"}
                for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": "tensorflow",
                    "ready": False,
                    "restartCount": 0,
                    "image": workload.IMAGE,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": "2026-12-07T21:00:01Z",
                            "finishedAt": "2026-12-07T21:00:05Z",
                        }
                    },
                }
            ],
            "hostIP": "10.0.0.1",
            "podIP": "10.244.0.7",
            "startTime": "2026-12-07T21:00:00Z",
        }
        pods.append(pod)
    return pods


def held() -> int:
    """Bytes Python holds now, of those allocated since tracing began."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure(n: int, workers: int) -> dict[str, float]:
    """Bytes per running job, finished job, pod observation and Service entry."""
    tracemalloc.start()  # before anything measured is made, so that its freeing counts too
    raw = [json.dumps(finished_job(i, workers)) for i in range(n)]
    raw_pods = [json.dumps(p) for i in range(n) for p in pods_of(finished_job(i, workers))]
    settings = OperatorSettings()

    start = held()
    states = [JobState(kept(json.loads(text))) for text in raw]
    for state in states:
        state.compiled = (("", 1), compile_job(state.body.get("spec"), settings))
    running = held() - start
    for state in states:
        state.freeze()
    frozen = held() - start
    pods = Informer(
        None,  # type: ignore[arg-type]
        "pods",
        JOB_NAME_LABEL,
        PodObservation.from_pod,
        lambda key: None,
        accepts=controlled_by_a_job,
    )

    start = held()
    for text in raw_pods:
        pods.apply("ADDED", json.loads(text))
    pod_bytes = held() - start
    services = Informer(
        None,  # type: ignore[arg-type]
        "services",
        JOB_NAME_LABEL,
        lambda s: (s["metadata"]["name"], None),
        lambda key: None,
    )

    rendered = []
    for i in range(n):
        children = workload.render_children(new(finished_job(i, workers)), "u")
        service = next(c for p, c in children if p == "services")
        service["metadata"]["uid"] = f"service-{i}"
        rendered.append(json.dumps(service))
    start = held()
    for text in rendered:
        services.apply("ADDED", json.loads(text))
    service_bytes = held() - start
    tracemalloc.stop()
    return {
        "job JSON": sum(map(len, raw)) / n,
        "running job, body and compiled spec": running / n,
        "finished job, frozen": frozen / n,
        "pod observation, in the pod informer": pod_bytes / len(raw_pods),
        "Service entry, in its informer": service_bytes / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"{args.jobs} jobs of {args.workers} workers; bytes each:")
    for what, size in measure(args.jobs, args.workers).items():
        print(f"  {what + ':':40} {size:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
