"""The one observer of a round: LIST then WATCH (never poll) pods and jobs, print what it sees.

Runs as a process of its own, so that the driver's work never delays its clock. It prints one
JSON line per observation, with ``time.monotonic()`` (CLOCK_MONOTONIC: the same clock in every
process of the machine) at the moment the event was read:

    {"e": "ready"}                                       both watches are open
    {"e": "pod", "t": ..., "name": ..., "phase": ...}    a pod first seen, or its phase changed
    {"e": "job", "t": ..., "name": ..., "cond": ...}     a job's condition first became True
    {"e": "error", "what": ...}

    python -m tfjob_bench.observer --kubeconfig K --namespace NS --selector S \
        [--jobs GROUP/VERSION/PLURAL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from .kubeapi import ApiError, RawApi, namespaced

CONDITIONS = ("Created", "Running", "Restarting", "Succeeded", "Failed", "Suspended")


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class PodState:
    def __init__(self) -> None:
        self.phases: dict[str, str] = {}

    def see(self, pod: dict[str, Any], now: float) -> None:
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if self.phases.get(name) != phase:
            self.phases[name] = phase
            emit({"e": "pod", "t": now, "name": name, "phase": phase})


class JobState:
    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}

    def see(self, job: dict[str, Any], now: float) -> None:
        name = job["metadata"]["name"]
        seen = self.seen.setdefault(name, set())
        for condition in (job.get("status") or {}).get("conditions") or []:
            kind = condition.get("type")
            if condition.get("status") == "True" and kind in CONDITIONS and kind not in seen:
                seen.add(kind)
                emit({"e": "job", "t": now, "name": name, "cond": kind})


async def follow(
    api: RawApi,
    path: str,
    params: dict[str, str],
    state: PodState | JobState,
    opened: asyncio.Event,
) -> None:
    """LIST, then WATCH from the list's resourceVersion; re-watch from the last one seen."""
    items, version = await api.list_all(path, params)
    now = time.monotonic()
    for item in items:
        state.see(item, now)
    while True:
        try:
            async for event in api.watch(path, version, params, opened=opened):
                now = time.monotonic()
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:  # too old: list again
                        items, version = await api.list_all(path, params)
                        for item in items:
                            state.see(item, time.monotonic())
                    break
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if kind in ("ADDED", "MODIFIED"):
                    state.see(obj, now)
        except ApiError as error:
            emit({"e": "error", "what": str(error)})
            await asyncio.sleep(0.5)
            items, version = await api.list_all(path, params)
            for item in items:
                state.see(item, time.monotonic())


async def observe(kubeconfig: Path, namespace: str, selector: str, jobs: str | None) -> None:
    async with RawApi(kubeconfig, connections=4) as api:
        params = {"labelSelector": selector}
        opened = [asyncio.Event()]
        tasks = [
            asyncio.create_task(
                follow(api, namespaced(namespace, "pods"), params, PodState(), opened[0])
            )
        ]
        if jobs:
            group, version, plural = jobs.split("/")
            opened.append(asyncio.Event())
            path = namespaced(namespace, plural, group=group, version=version)
            tasks.append(asyncio.create_task(follow(api, path, params, JobState(), opened[1])))
        waiting = {asyncio.create_task(e.wait()) for e in opened}
        while waiting:
            done, _ = await asyncio.wait([*tasks, *waiting], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in tasks:  # a watch ended before it opened: its error is the answer
                    await task
            waiting -= done
        emit({"e": "ready"})
        await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True)
    parser.add_argument("--jobs", default=None, help="GROUP/VERSION/PLURAL of the job kind")
    args = parser.parse_args(argv)
    try:
        asyncio.run(observe(args.kubeconfig, args.namespace, args.selector, args.jobs))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
