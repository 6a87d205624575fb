"""A node whose pods are real processes: it registers a Node, keeps it Ready, runs the pods the
scheduler binds to it and reports their status, like a (much smaller) kubelet.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
import threading
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client.rest import ApiException

from .logserver import LogServer
from .network import NodeNetwork, hosts_file, write_hosts
from .runner import PodRunner

log = logging.getLogger(__name__)

LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10
NODE_ADDRESS = "127.0.0.1"  # where the API server reaches this node's log endpoint
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LocalNodeAgent:
    def __init__(
        self,
        *,
        kubeconfig: Path,
        node_name: str,
        state_dir: Path,
        python_bin: Path,
        workdir: Path,
        images: list[tuple[str, Path, Path]] | None = None,
        labels: dict[str, str],
        taints: list[dict[str, str]],
        cluster_domain: str = "cluster.local",
        bridge: str = "tfjbr0",
        subnet: str = "10.250.0.0/24",
        cpu: str = "8",
        memory: str = "16Gi",
    ) -> None:
        self.api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        self.core = k8s.CoreV1Api(self.api)
        self.node_name = node_name
        self.state_dir = state_dir
        self.workdir = workdir
        self.pod_path = f"{python_bin}:{SYSTEM_PATH}"
        # (image glob, python bin/, working directory): what an image would have carried.
        self.images = [
            (pattern, f"{bin_dir}:{SYSTEM_PATH}", directory)
            for pattern, bin_dir, directory in images or []
        ]
        self.labels = labels
        self.taints = taints
        self.cluster_domain = cluster_domain
        self.network = NodeNetwork(bridge, subnet)
        self.node_address = NODE_ADDRESS
        self.capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
        self.runners: dict[str, PodRunner] = {}
        self.endpoints: dict[str, dict[str, list[tuple[str, str, str | None]]]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.log_server = LogServer(self)

    def environment_for(self, image: str) -> tuple[str, Path]:
        """PATH and default working directory of a container, by its image."""
        for pattern, path, directory in self.images:
            if fnmatch.fnmatch(image, pattern):
                return path, directory
        return self.pod_path, self.workdir

    # ----- node -----------------------------------------------------------------------------
    def _node_status(self) -> dict[str, Any]:
        stamp = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "local node agent is running pods",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        pressure = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHasNo{kind}",
                "message": "",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
            for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [ready, *pressure],
            "addresses": [{"type": "InternalIP", "address": self.node_address}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_server.port}},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
                "osImage": "local processes",
                "kernelVersion": os.uname().release,
                "containerRuntimeVersion": "local://processes",
                "kubeletVersion": "tfjob-localnode",
                "kubeProxyVersion": "",
            },
        }

    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **self.labels,
                },
            },
            "spec": {"taints": self.taints},
            "status": self._node_status(),
        }
        try:
            self.core.create_node(body)
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.patch_node(
                self.node_name, {"metadata": body["metadata"], "spec": body["spec"]}
            )
        self.core.patch_node_status(self.node_name, {"status": self._node_status()})

    def _heartbeat(self) -> None:
        coordination = k8s.CoordinationV1Api(self.api)
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self._renew_lease(coordination)
                self.core.patch_node_status(self.node_name, {"status": self._node_status()})
            except Exception:
                log.warning("node heartbeat failed", exc_info=True)

    def _renew_lease(self, coordination: k8s.CoordinationV1Api) -> None:
        stamp = _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": stamp,
            },
        }
        try:
            coordination.patch_namespaced_lease(self.node_name, "kube-node-lease", body)
        except ApiException as error:
            if error.status != 404:
                raise
            coordination.create_namespaced_lease("kube-node-lease", body)

    # ----- pods -----------------------------------------------------------------------------
    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        key = f"{metadata['namespace']}/{metadata['name']}/{metadata['uid']}"
        with self.lock:
            runner = self.runners.get(key)
            if kind == "DELETED":
                self.runners.pop(key, None)
                if runner is not None:
                    runner.request_stop(0)
                return
            if metadata.get("deletionTimestamp"):
                if runner is not None and runner.is_alive():
                    runner.request_stop(metadata.get("deletionGracePeriodSeconds"))
                elif runner is None or not runner.is_alive():
                    self.confirm_deletion(pod)
                return
            phase = (pod.get("status") or {}).get("phase")
            if runner is None and phase not in ("Succeeded", "Failed"):
                runner = PodRunner(self, pod)
                self.runners[key] = runner
                runner.start()

    def confirm_deletion(self, pod: dict[str, Any]) -> None:
        """Once its processes are gone, let the API server drop the pod (grace 0)."""
        metadata = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(
                metadata["name"],
                metadata["namespace"],
                body=k8s.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=metadata["uid"])
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("could not confirm deletion of %s: %s", metadata["name"], error.reason)

    def _watch(self, list_fn: Any, handle: Any, **kwargs: Any) -> None:
        """List then watch, forever, calling ``handle(type, object_dict)``."""
        while not self.stopping.is_set():
            try:
                listed = list_fn(**kwargs)
                for item in listed.items:
                    handle("ADDED", self.api.sanitize_for_serialization(item))
                stream = watch.Watch()
                for event in stream.stream(
                    list_fn,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=60,
                    **kwargs,
                ):
                    if self.stopping.is_set():
                        stream.stop()
                        return
                    handle(event["type"], event["raw_object"])
            except Exception:
                if not self.stopping.is_set():
                    log.warning("watch failed; listing again", exc_info=True)
                    self.stopping.wait(1)

    # ----- DNS ------------------------------------------------------------------------------
    def _on_endpoint_slice(self, kind: str, endpoint_slice: dict[str, Any]) -> None:
        metadata = endpoint_slice["metadata"]
        namespace = metadata["namespace"]
        service = (metadata.get("labels") or {}).get("kubernetes.io/service-name")
        if not service:
            return
        entries = [
            (service, address, endpoint.get("hostname"))
            for endpoint in endpoint_slice.get("endpoints") or []
            for address in endpoint.get("addresses") or []
        ]
        with self.lock:
            slices = self.endpoints.setdefault(namespace, {})
            if kind == "DELETED":
                slices.pop(metadata["name"], None)
            else:
                slices[metadata["name"]] = entries
            runners = [r for r in self.runners.values() if r.namespace == namespace]
        for runner in runners:
            self.refresh_hosts(runner)

    def refresh_hosts(self, runner: PodRunner) -> None:
        interface = runner.interface
        if interface is None:
            return
        with self.lock:
            entries = [e for s in self.endpoints.get(runner.namespace, {}).values() for e in s]
        write_hosts(
            interface.netns,
            hosts_file(
                own_address=interface.address,
                hostname=runner.hostname,
                subdomain=runner.subdomain,
                namespace=runner.namespace,
                cluster_domain=self.cluster_domain,
                endpoints=entries,
            ),
        )

    # ----- run ------------------------------------------------------------------------------
    def run(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.network.setup()
        self.log_server.start()
        self.register()
        discovery = k8s.DiscoveryV1Api(self.api)
        threads = [
            threading.Thread(target=self._heartbeat, daemon=True, name="heartbeat"),
            threading.Thread(
                target=self._watch,
                daemon=True,
                name="endpointslices",
                args=(discovery.list_endpoint_slice_for_all_namespaces, self._on_endpoint_slice),
            ),
        ]
        for thread in threads:
            thread.start()
        self._renew_lease(k8s.CoordinationV1Api(self.api))
        log.info(
            "local node %s ready (pods in %s, workdir %s, images %s)",
            self.node_name,
            self.network.subnet,
            self.workdir,
            [pattern for pattern, _, _ in self.images],
        )
        self._watch(
            self.core.list_pod_for_all_namespaces,
            self._on_pod,
            field_selector=f"spec.nodeName={self.node_name}",
        )

    def shutdown(self) -> None:
        """Stop every pod process and remove the node's network; the Node object stays."""
        self.stopping.set()
        with self.lock:
            runners = list(self.runners.values())
        for runner in runners:
            runner.request_stop(2, deleted=False)
        for runner in runners:
            runner.join(timeout=10)
        self.log_server.stop()
        self.network.teardown_all()
