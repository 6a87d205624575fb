"""One pod on the local node, from start to end: its namespaces, volumes and processes, and the
status a kubelet would report for it."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.rest import ApiException

from .network import PodInterface
from .volumes import VolumeBuilder, VolumeError, mount_plan, resolve_env

if TYPE_CHECKING:
    from .agent import LocalNodeAgent

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 10.0
TERMINATION_MESSAGE_PATH = "/dev/termination-log"  # the API server's default
MAX_MESSAGE_BYTES = 4096  # what a kubelet keeps of a termination message


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_status(returncode: int) -> int:
    """A shell's view of a process's end: 128 + signal for a killed process."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class ContainerRun:
    spec: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    restart_count: int = 0
    started_at: str | None = None
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    exit_code: int | None = None
    next_start: float = 0.0
    ready: bool = False
    next_probe: float = 0.0

    def probe_port(self) -> int | None:
        """The port of a tcpSocket readiness probe (the only kind the local node runs)."""
        probe = (self.spec.get("readinessProbe") or {}).get("tcpSocket")
        if not probe:
            return None
        port = probe.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = [p for p in self.spec.get("ports") or [] if p.get("name") == port]
            return int(named[0]["containerPort"]) if named else None
        return int(port)

    @property
    def name(self) -> str:
        return str(self.spec["name"])


class PodRunner(threading.Thread):
    def __init__(self, agent: LocalNodeAgent, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        super().__init__(name=f"pod-{metadata['namespace']}/{metadata['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.namespace = metadata["namespace"]
        self.pod_name = metadata["name"]
        self.uid = metadata["uid"]
        self.directory = agent.state_dir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.interface: PodInterface | None = None
        self.containers = [ContainerRun(c) for c in pod["spec"]["containers"]]
        self.init_containers = [ContainerRun(c) for c in pod["spec"].get("initContainers") or []]
        self.stop_requested = threading.Event()
        self.delete_when_stopped = True
        self.grace_seconds = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.start_time = now()
        self.phase = "Pending"

    # ----- identity -------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        return str(self.pod["spec"].get("hostname") or self.pod_name)

    @property
    def subdomain(self) -> str | None:
        return self.pod["spec"].get("subdomain")

    def log_path(self, container: str) -> Path:
        return self.directory / "logs" / f"{container}.log"

    def request_stop(self, grace_seconds: float | None, *, deleted: bool = True) -> None:
        """Stop the pod's processes: SIGTERM, then SIGKILL after the grace period. A deleted pod
        is then released to the API server; a pod stopped with its node stays as it is."""
        if grace_seconds is not None:
            self.grace_seconds = grace_seconds
        self.delete_when_stopped = deleted
        self.stop_requested.set()

    # ----- lifecycle ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as error:
            log.exception("pod %s/%s failed on the local node", self.namespace, self.pod_name)
            self.phase = "Failed"
            self._report(reason="LocalNodeError", message=str(error))
        finally:
            self._kill_all(grace=0)
            if self.interface is not None:
                self.agent.network.detach(self.interface)
                self.interface = None
            if self.stop_requested.is_set() and self.delete_when_stopped:
                self.agent.confirm_deletion(self.pod)

    def _run(self) -> None:
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self.interface = self.agent.network.attach(self.uid)
        self.agent.refresh_hosts(self)
        volumes = self._wait_for_volumes()
        if volumes is None:
            return
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for container in self.containers:
            container.state = {"waiting": {"reason": "PodInitializing"}}
        for run in self.init_containers:
            while True:
                self._start(run, volumes)
                self._report()
                code = self._wait_for_init(run)
                if code is None:
                    return
                terminated = self._terminated(run, code)
                if code == 0:
                    run.state = {"terminated": terminated}
                    break
                if policy == "Never":
                    # As a kubelet: the pod fails, the init container's status says why.
                    run.state = {"terminated": terminated}
                    self.phase = "Failed"
                    self._report()
                    return
                run.last_state = {"terminated": terminated}
                run.state = {"waiting": {"reason": "CrashLoopBackOff"}}
                self._report()
                if self.stop_requested.wait(min(RESTART_BACKOFF_MAX, 2**run.restart_count)):
                    return
                run.restart_count += 1
        for container in self.containers:
            self._start(container, volumes)
        self.phase = "Running"
        self._report()
        self._supervise(volumes, policy)

    def _wait_for_init(self, run: ContainerRun) -> int | None:
        """The init container's exit status, or None when the pod was stopped meanwhile."""
        assert run.process is not None
        while run.process.poll() is None:
            if self.stop_requested.wait(0.2):
                _signal(run.process, signal.SIGKILL)
                run.process.wait()
                return None
        code = exit_status(run.process.returncode)
        run.process = None
        return code

    def _terminated(self, container: ContainerRun, code: int) -> dict[str, Any]:
        """A container's terminated state, with what it wrote to its termination log."""
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": container.started_at,
            "finishedAt": now(),
        }
        message = self.termination_log(container.name).read_bytes()[:MAX_MESSAGE_BYTES]
        if message.strip():
            terminated["message"] = message.decode(errors="replace")
        return terminated

    def _wait_for_volumes(self) -> dict[str, Path] | None:
        builder = VolumeBuilder(self.agent.core, self.pod, self.directory / "volumes")
        delay = 1.0
        while not self.stop_requested.is_set():
            try:
                return builder.build()
            except VolumeError as error:
                for container in self.containers:
                    container.state = {
                        "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
                    }
                self._report()
                self.stop_requested.wait(delay)
                delay = min(RESTART_BACKOFF_MAX, delay * 2)
        return None

    def _start(self, container: ContainerRun, volumes: dict[str, Path]) -> None:
        assert self.interface is not None
        spec = container.spec
        argv = [*(spec.get("command") or []), *(spec.get("args") or [])]
        if not argv:
            raise RuntimeError(
                f"container {container.name} has no command: the local node runs commands in "
                "its Python environment, it does not pull or start images"
            )
        path, default_workdir = self.agent.environment_for(str(spec.get("image", "")))
        env = {
            "PATH": path,
            "HOSTNAME": self.hostname,
            "HOME": str(self.directory / "home"),
            **resolve_env(spec, self.pod, self.agent.core, self.interface.address),
        }
        (self.directory / "home").mkdir(exist_ok=True)
        # The termination log, as a kubelet gives each container: what the container writes
        # there (at most 4096 bytes) becomes its terminated state's message.
        termination_log = self.termination_log(container.name)
        termination_log.write_bytes(b"")
        termination_log.chmod(0o666)
        init_spec = {
            "hostname": self.hostname,
            "mounts": [
                *mount_plan(spec, volumes),
                {
                    "source": str(termination_log),
                    "target": spec.get("terminationMessagePath") or TERMINATION_MESSAGE_PATH,
                    "readOnly": False,
                    "file": True,
                },
            ],
            "workingDir": spec.get("workingDir") or str(default_workdir),
            "env": env,
            "argv": argv,
        }
        spec_path = self.directory / f"{container.name}.init.json"
        spec_path.write_text(json.dumps(init_spec))
        spec_path.chmod(0o600)
        command = [
            "ip",
            "netns",
            "exec",
            self.interface.netns,
            "unshare",
            "--uts",
            "--",
            sys.executable,
            "-m",
            "tfjob_localcluster.localnode.podinit",
            str(spec_path),
        ]
        with self.log_path(container.name).open("ab") as output:
            container.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        container.started_at = now()
        container.state = {"running": {"startedAt": container.started_at}}
        container.ready = container.probe_port() is None  # no probe: ready once started
        delay = float((spec.get("readinessProbe") or {}).get("initialDelaySeconds", 0))
        container.next_probe = time.monotonic() + delay
        log.info(
            "pod %s/%s: started %s (pid %d)",
            self.namespace,
            self.pod_name,
            container.name,
            container.process.pid,
        )

    def _supervise(self, volumes: dict[str, Path], policy: str) -> None:
        while True:
            if self.stop_requested.is_set():
                self._kill_all(grace=self.grace_seconds)
                return
            changed = any(self._probe(c) for c in self.containers)
            for container in self.containers:
                if container.done:
                    continue
                if container.process is None:
                    if time.monotonic() >= container.next_start:
                        container.restart_count += 1
                        self._start(container, volumes)
                        changed = True
                    continue
                returncode = container.process.poll()
                if returncode is None:
                    continue
                code = exit_status(returncode)
                container.exit_code = code
                terminated = self._terminated(container, code)
                container.process = None
                changed = True
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    container.last_state = {"terminated": terminated}
                    container.state = {
                        "waiting": {"reason": "CrashLoopBackOff" if code else "Completed"}
                    }
                    container.next_start = time.monotonic() + min(
                        RESTART_BACKOFF_MAX, 2.0**container.restart_count
                    )
                else:
                    container.state = {"terminated": terminated}
                    container.done = True
            if all(c.done for c in self.containers):
                failed = any(c.exit_code for c in self.containers)
                self.phase = "Failed" if failed else "Succeeded"
                self._report()
                return
            if changed:
                self._report()
            self.stop_requested.wait(0.2)

    def termination_log(self, container: str) -> Path:
        return self.directory / f"{container}.termination-log"

    def _probe(self, container: ContainerRun) -> bool:
        """Run a due tcpSocket readiness probe; True when the container just became ready."""
        port = container.probe_port()
        if container.ready or container.process is None or port is None or self.interface is None:
            return False
        if time.monotonic() < container.next_probe:
            return False
        probe = container.spec["readinessProbe"]
        container.next_probe = time.monotonic() + float(probe.get("periodSeconds", 10))
        try:
            with socket.create_connection((self.interface.address, port), timeout=1):
                container.ready = True
        except OSError:
            return False
        return True

    def _kill_all(self, grace: float) -> None:
        running = [c for c in self.containers if c.process is not None]
        for container in running:
            _signal(container.process, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + grace
        for container in running:
            assert container.process is not None
            try:
                container.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(container.process, signal.SIGKILL)
                container.process.wait()
            code = exit_status(container.process.returncode)
            container.state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Error" if code else "Completed",
                    "startedAt": container.started_at,
                    "finishedAt": now(),
                }
            }
            container.process = None

    # ----- status ---------------------------------------------------------------------------
    def status(self, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
        running = self.phase == "Running"
        ready = running and all("running" in c.state and c.ready for c in self.containers)
        initialized = all(
            c.state.get("terminated", {}).get("exitCode") == 0 for c in self.init_containers
        )
        conditions = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": str(initialized)},
            {"type": "ContainersReady", "status": str(ready)},
            {"type": "Ready", "status": str(ready)},
        ]
        for condition in conditions:
            condition["lastTransitionTime"] = now()
        status: dict[str, Any] = {
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": self.agent.node_address,
            "hostIPs": [{"ip": self.agent.node_address}],
            "startTime": self.start_time,
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.spec.get("image", ""),
                    "imageID": "",
                    "containerID": f"local://{self.uid}/{c.name}",
                    "ready": "running" in c.state and running and c.ready,
                    "started": "running" in c.state,
                    "restartCount": c.restart_count,
                    "state": c.state,
                    "lastState": c.last_state,
                }
                for c in self.containers
            ],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [
                {
                    "name": c.name,
                    "image": c.spec.get("image", ""),
                    "imageID": "",
                    "containerID": f"local://{self.uid}/{c.name}",
                    "ready": c.state.get("terminated", {}).get("exitCode") == 0,
                    "started": "running" in c.state,
                    "restartCount": c.restart_count,
                    "state": c.state,
                    "lastState": c.last_state,
                }
                for c in self.init_containers
            ]
        if self.interface is not None:
            status["podIP"] = self.interface.address
            status["podIPs"] = [{"ip": self.interface.address}]
        if reason:
            status["reason"] = reason
            status["message"] = message or ""
        return status

    def _report(self, reason: str | None = None, message: str | None = None) -> None:
        try:
            self.agent.core.patch_namespaced_pod_status(
                self.pod_name, self.namespace, {"status": self.status(reason, message)}
            )
        except ApiException as error:
            if error.status != 404:
                log.warning(
                    "status of %s/%s not written: %s", self.namespace, self.pod_name, error.reason
                )


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
