"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok's simulated nodes, started from cached binaries and stopped cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from . import binaries, processes
from .network import NODE_IP, POD_CIDR, SERVICE_CLUSTER_IP_RANGE, SIMULATED_NODE_IP
from .nodepools import NODE_POOL_LABEL, NodePools
from .nodepools import load as load_node_pools
from .pki import CertificateAuthority, KeyPair, service_account_signing_key
from .realnode import DNS_USER, RealNode, dns_permissions

GANG_API = "scheduling.k8s.io/v1alpha2"  # the PodGroup API of Kubernetes 1.36
STATE_FILE = "cluster.json"
_STATE_DIRS = {"etcd", "pki", "logs", "nodes", "kcm-certs", "scheduler-certs"}
_STATE_FILES = {STATE_FILE, "kubeconfig", "kwok-stages.yaml", "audit-policy.yaml"}


# Whom the API server is to a real node's kubelet; Kubernetes' own role lets it read logs,
# exec and port-forward there (kubeadm binds the same).
KUBELET_CLIENT = "kube-apiserver-kubelet-client"


def kubelet_api_binding() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "tfjob-local:kubelet-api"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUBELET_CLIENT}
        ],
    }


@dataclass
class Endpoints:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def allocate(cls) -> Endpoints:
        return cls(*(processes.free_port() for _ in range(5)))


@dataclass
class LocalCluster:
    """One control plane whose files live in ``state_dir``.

    ``detach=False`` (tests): processes die with this Python process at the latest.
    ``detach=True`` (a person's cluster): processes outlive it; ``stop`` finds them by state file.
    """

    state_dir: Path
    node_pools: NodePools = field(default_factory=load_node_pools)
    detach: bool = False
    # Opt-in knobs, for the benchmark; the defaults are what everyone else runs.
    # An audit policy (a Policy document) turns the API server's audit log on, at `audit_log`.
    audit_policy: dict[str, Any] | None = None
    # kwok's node Lease duration (renewed every quarter of it): longer means fewer writes.
    node_lease_seconds: int = 40
    # kube-controller-manager's --node-monitor-grace-period (e.g. "180s"), for long leases.
    node_monitor_grace_period: str | None = None
    # --kube-api-qps of kube-controller-manager and kube-scheduler (burst twice that).
    component_api_qps: int | None = None
    # Kubernetes' own gang scheduling (alpha in 1.36): the PodGroup API served, and the scheduler
    # placing a PodGroup's pods all or nothing. Off: the API is absent, as on most clusters.
    gang_scheduling: bool = True
    # Where pods reach the API (a real node's IP): the API server listens on every address,
    # not only loopback, and the `kubernetes` Service points there. None: no pod needs it.
    pod_facing_address: str | None = None
    running: list[processes.RunningProcess] = field(default_factory=list)
    real_nodes: list[RealNode] = field(default_factory=list)
    ports: Endpoints | None = None
    startup_seconds: dict[str, float] = field(default_factory=dict)
    _ca: CertificateAuthority | None = None
    _api_keys: tuple[KeyPair, KeyPair] | None = None

    # ----- paths ---------------------------------------------------------------------------
    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (group system:masters)."""
        return self.state_dir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (written only with an ``audit_policy``)."""
        return self.log_dir / "audit.log"

    @property
    def server(self) -> str:
        assert self.ports is not None
        return f"https://127.0.0.1:{self.ports.apiserver}"

    # ----- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Start every component and wait until nodes are Ready; stop everything on failure."""
        started = time.monotonic()
        for directory in (self.state_dir, self.pki_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            self._start(started, timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = time.monotonic() - started
        self._write_state()

    def _mark(self, what: str, since: float) -> None:
        self.startup_seconds[what] = time.monotonic() - since

    def _start(self, started: float, timeout: float) -> None:
        deadline = started + timeout

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        if self.node_pools.real_pools() and self.pod_facing_address is None:
            self.pod_facing_address = NODE_IP
        self.ports = Endpoints.allocate()
        self._ca = CertificateAuthority(self.pki_dir)
        serving = self._ca.issue(
            "apiserver",
            "kube-apiserver",
            server_hosts=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.96.0.1",
                *([self.pod_facing_address] if self.pod_facing_address else []),
            ),
        )
        sa_key = service_account_signing_key(self.pki_dir)
        self._api_keys = (serving, sa_key)
        # etcd serves TLS on loopback and takes clients by certificate only.
        self._ca.issue(
            "etcd-server", "etcd", server_hosts=("127.0.0.1", "localhost"), also_client=True
        )
        self._ca.issue("client-kube-apiserver-etcd-client", "kube-apiserver-etcd-client")
        self._ca.issue("kubelet-client", KUBELET_CLIENT)
        self._write_kubeconfig(self.kubeconfig, "admin", ("system:masters",))
        kcm_kubeconfig = self._write_kubeconfig(
            self.state_dir / "kube-controller-manager.kubeconfig",
            "system:kube-controller-manager",
        )
        scheduler_kubeconfig = self._write_kubeconfig(
            self.state_dir / "kube-scheduler.kubeconfig", "system:kube-scheduler"
        )

        etcd = self._run("etcd", self._etcd_args())
        processes.wait_until(
            self._etcd_healthy, timeout=remaining(), what="etcd /health", process=etcd
        )
        self._mark("etcd", started)

        apiserver = self._run("kube-apiserver", self._apiserver_args(serving, sa_key))
        processes.wait_until(
            lambda: self._get(self.ports.apiserver, "/readyz") == "ok",  # type: ignore[union-attr]
            timeout=remaining(),
            what="kube-apiserver /readyz",
            process=apiserver,
        )
        self._mark("kube-apiserver", started)

        kcm = self._run("kube-controller-manager", self._controller_manager_args(kcm_kubeconfig))
        scheduler = self._run("kube-scheduler", self._scheduler_args(scheduler_kubeconfig))
        kwok = self._run("kwok", self._kwok_args())
        self.create_nodes()
        processes.wait_until(
            lambda: (
                self._get(self.ports.controller_manager, "/healthz", client_cert=False)  # type: ignore[union-attr]
                == "ok"
            ),
            timeout=remaining(),
            what="kube-controller-manager /healthz",
            process=kcm,
        )
        processes.wait_until(
            lambda: self._get(self.ports.scheduler, "/readyz", client_cert=False) == "ok",  # type: ignore[union-attr]
            timeout=remaining(),
            what="kube-scheduler /readyz",
            process=scheduler,
        )
        processes.wait_until(
            self._all_nodes_ready, timeout=remaining(), what="simulated nodes Ready", process=kwok
        )
        self._mark("nodes-ready", started)
        for pool in self.node_pools.real_pools():
            (name,) = pool.node_names()
            self.add_real_node(
                name,
                labels={NODE_POOL_LABEL: pool.name, **pool.labels},
                taints=[f"{t['key']}={t['value']}:{t['effect']}" for t in pool.effective_taints()],
            )
            self._mark("real-node-ready", started)
        processes.wait_until(
            lambda: self._service_account_exists("default"),
            timeout=remaining(),
            what="the default ServiceAccount",
            process=kcm,
        )

    def kill_api(self) -> None:
        """SIGKILL kube-apiserver and etcd, as a crash of the control plane's host would; the
        controller manager, scheduler, kwok and every client are left cut off."""
        for name in ("kube-apiserver", "etcd"):
            for process in [p for p in self.running if p.name == name]:
                process.stop(grace_seconds=0)
                self.running.remove(process)

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision and return it: a watch that resumes from an
        older resourceVersion then gets 410 Gone and must list again (what a long outage or
        a control-plane upgrade does to every watcher)."""
        assert self.ports is not None
        port = self.ports.etcd_client

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(
                f"https://127.0.0.1:{port}/v3/kv/{path}",
                data=json.dumps(body).encode(),
            )
            with urllib.request.urlopen(  # noqa: S310 - loopback
                request, timeout=10, context=self._etcd_context()
            ) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer

        revision = int(post("range", {"key": "Lw==", "limit": 1})["header"]["revision"])
        post("compaction", {"revision": revision, "physical": True})
        return revision

    def start_api(self, timeout: float = 60.0) -> None:
        """Start etcd and kube-apiserver again, on the same ports, data and certificates."""
        assert self.ports is not None
        assert self._api_keys is not None
        serving, sa_key = self._api_keys
        etcd = self._run("etcd", self._etcd_args())
        processes.wait_until(self._etcd_healthy, timeout=timeout, what="etcd /health", process=etcd)
        apiserver = self._run("kube-apiserver", self._apiserver_args(serving, sa_key))
        processes.wait_until(
            lambda: self._get(self.ports.apiserver, "/readyz") == "ok",  # type: ignore[union-attr]
            timeout=timeout,
            what="kube-apiserver /readyz",
            process=apiserver,
        )
        self._write_state()

    def stop(self) -> None:
        """Stop exactly the processes this cluster started, newest first."""
        for node in reversed(self.real_nodes):  # while the API server still answers them
            node.stop()
        self.real_nodes.clear()
        for process in reversed(self.running):
            process.stop()
        self.running.clear()
        state = self.state_dir / STATE_FILE
        if state.exists():
            state.unlink()

    def clear_state(self) -> None:
        """Remove what a previous cluster left in ``state_dir`` (only what a cluster writes)."""
        if not self.state_dir.is_dir():
            return
        for entry in self.state_dir.iterdir():
            if entry.name in _STATE_DIRS and entry.is_dir():
                shutil.rmtree(entry)
            elif entry.name in _STATE_FILES or entry.name.endswith(".kubeconfig"):
                entry.unlink()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- state for a detached cluster ----------------------------------------------------
    def _write_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": dataclasses.asdict(self.ports) if self.ports else {},
            "processes": [p.to_dict() for p in self.running],
            "real_nodes": [node.to_dict() for node in self.real_nodes],
            "startup_seconds": self.startup_seconds,
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def attach(cls, state_dir: Path) -> LocalCluster | None:
        """The cluster recorded in ``state_dir``, or None if none is recorded."""
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        cluster = cls(state_dir=state_dir, detach=True)
        cluster.running = [processes.RunningProcess.from_dict(p) for p in state["processes"]]
        cluster.real_nodes = [RealNode.from_dict(n) for n in state.get("real_nodes", [])]
        return cluster

    def adopt(self, process: processes.RunningProcess) -> None:
        """Count a process started beside the cluster (the operator) as part of it."""
        self.running.append(process)
        self._write_state()

    def create_custom_object(self, document: dict[str, Any], namespace: str = "default") -> bool:
        """Create a namespaced custom object; False if one of that name exists already."""
        group, version = document["apiVersion"].split("/")
        plural = document["kind"].lower() + "s"
        with self.api_client() as api:
            try:
                k8s.CustomObjectsApi(api).create_namespaced_custom_object(
                    group, version, namespace, plural, document
                )
            except ApiException as error:
                if error.status != 409:
                    raise
                return False
        return True

    def install_crd(self, crd: dict[str, Any], timeout: float = 30) -> None:
        with self.api_client() as api:
            extensions = k8s.ApiextensionsV1Api(api)
            try:
                extensions.create_custom_resource_definition(crd)
            except ApiException as error:
                if error.status != 409:
                    raise
                current = extensions.read_custom_resource_definition(crd["metadata"]["name"])
                crd = {
                    **crd,
                    "metadata": {
                        **crd["metadata"],
                        "resourceVersion": current.metadata.resource_version,
                    },
                }
                extensions.replace_custom_resource_definition(crd["metadata"]["name"], crd)

            def established() -> bool:
                current = extensions.read_custom_resource_definition(crd["metadata"]["name"])
                return any(
                    c.type == "Established" and c.status == "True"
                    for c in current.status.conditions or []
                )

            processes.wait_until(established, timeout=timeout, what="the CRD to be established")

    def add_real_node(
        self,
        name: str = "real-0",
        *,
        labels: dict[str, str] | None = None,
        taints: list[str] | None = None,
        timeout: float = 120,
    ) -> RealNode:
        """A real node (kubelet, containerd, runc, the CNI bridge, CoreDNS as the cluster DNS,
        kube-proxy) joined to this cluster at its pod-facing address, Ready; it stops with the
        cluster. Root only, one per machine at a time (its address and bridge are fixed)."""
        if self.pod_facing_address is None:
            raise ValueError("a real node needs a cluster started with a pod_facing_address")
        with self.api_client() as api:
            rbac = k8s.RbacAuthorizationV1Api(api)
            role, binding = dns_permissions()
            for create, document in (
                (rbac.create_cluster_role, role),
                (rbac.create_cluster_role_binding, binding),
                (rbac.create_cluster_role_binding, kubelet_api_binding()),
            ):
                try:
                    create(document)
                except ApiException as error:
                    if error.status != 409:
                        raise
        node = RealNode(
            name=name,
            state_dir=self.state_dir / "nodes" / name,
            kubeconfig=self.kubeconfig_for(f"system:node:{name}", ("system:nodes",)),
            dns_kubeconfig=self.kubeconfig_for(DNS_USER),
            proxy_kubeconfig=self.kubeconfig_for("system:kube-proxy"),
            node_ip=self.pod_facing_address,
            labels=labels or {},
            taints=taints or [],
            client_ca=self._ca.cert_path if self._ca else None,
            api_port=self.ports.apiserver if self.ports else None,
            detach=self.detach,
        )
        self.real_nodes.append(node)
        node.start()
        processes.wait_until(
            lambda: self._node_ready(name), timeout=timeout, what=f"real node {name} Ready"
        )
        if (self.state_dir / STATE_FILE).exists():
            self._write_state()
        return node

    @contextlib.contextmanager
    def real_nodes_stopped(self, timeout: float = 120) -> Iterator[None]:
        """This cluster's real nodes stopped for a while, so that another cluster may run one
        on this machine; started again after, Ready, with the images they held."""
        stopped = list(self.real_nodes)
        for node in stopped:
            node.stop(keep_images=True)
        try:
            yield
        finally:
            for node in stopped:
                node.start()
                processes.wait_until(
                    lambda node=node: self._node_ready(node.name),
                    timeout=timeout,
                    what=f"real node {node.name} Ready again",
                )

    def _node_ready(self, name: str) -> bool:
        with self.api_client() as api:
            try:
                node = k8s.CoreV1Api(api).read_node(name)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def alive(self) -> bool:
        return (
            bool(self.running)
            and all(p.alive() for p in self.running)
            and all(node.alive() for node in self.real_nodes)
        )

    # ----- identities ----------------------------------------------------------------------
    def kubeconfig_for(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating as ``user`` in ``groups`` by client certificate."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        return self._write_kubeconfig(self.state_dir / f"user-{safe}.kubeconfig", user, groups)

    def _write_kubeconfig(self, path: Path, user: str, groups: tuple[str, ...] = ()) -> Path:
        assert self._ca is not None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        pair = self._ca.issue(f"client-{safe}", user, groups)
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tfjob-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self._ca.cert_path),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
                }
            ],
            "contexts": [
                {"name": "tfjob-local", "context": {"cluster": "tfjob-local", "user": user}}
            ],
            "current-context": "tfjob-local",
        }
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        return path

    def api_client(self, kubeconfig: Path | None = None) -> k8s.ApiClient:
        return k8s_config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    # ----- components ----------------------------------------------------------------------
    def _run(self, name: str, args: list[str]) -> processes.RunningProcess:
        process = processes.start(
            name, [str(binaries.binary(name)), *args], self.log_dir, detach=self.detach
        )
        self.running.append(process)
        return process

    def _etcd_args(self) -> list[str]:
        assert self.ports is not None
        assert self._ca is not None
        client_url = f"https://127.0.0.1:{self.ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            "--name=local",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            # Clients by a certificate of the cluster's CA only: the API server, and the
            # harness's own calls (health, compaction).
            "--client-cert-auth=true",
            f"--trusted-ca-file={self._ca.cert_path}",
            f"--cert-file={self.pki_dir / 'etcd-server.crt'}",
            f"--key-file={self.pki_dir / 'etcd-server.key'}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}",
            "--initial-cluster-state=new",
            # A throwaway test store: durability across power loss buys nothing here.
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=5m",
            "--log-level=warn",
        ]

    def _apiserver_args(self, serving: KeyPair, sa_key: KeyPair) -> list[str]:
        assert self.ports is not None
        assert self._ca is not None
        return [
            f"--etcd-servers=https://127.0.0.1:{self.ports.etcd_client}",
            f"--etcd-cafile={self._ca.cert_path}",
            f"--etcd-certfile={self.pki_dir / 'client-kube-apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={self.pki_dir / 'client-kube-apiserver-etcd-client.key'}",
            # What the API server shows a real node's kubelet (logs, exec): its webhook asks
            # the API server whether this user may (KUBELET_CLIENT's ClusterRoleBinding).
            f"--kubelet-client-certificate={self.pki_dir / 'kubelet-client.crt'}",
            f"--kubelet-client-key={self.pki_dir / 'kubelet-client.key'}",
            *self._api_address_args(),
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={self.pki_dir}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self._ca.cert_path}",
            "--authorization-mode=Node,RBAC",
            # As OpenShift runs: a child that blocks its owner's deletion needs update on the
            # owner's finalizers (the chart's RBAC must grant it; tests/integration/test_rbac).
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            # Logs and exec reach a real kubelet at its node IP (its name resolves nowhere).
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-account-issuer=https://127.0.0.1:{self.ports.apiserver}",
            f"--service-account-key-file={sa_key.cert}",
            f"--service-account-signing-key-file={sa_key.key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
            *self._audit_args(),
            *(
                ["--feature-gates=GenericWorkload=true", f"--runtime-config={GANG_API}=true"]
                if self.gang_scheduling
                else []
            ),
        ]

    def _api_address_args(self) -> list[str]:
        """Loopback alone. With a real node its pods reach the API server at the node's
        address (the `kubernetes` Service's endpoint), where the node forwards to loopback."""
        if self.pod_facing_address is None:
            return [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The `kubernetes` Service would point at loopback, which endpoints refuse.
                "--endpoint-reconciler-type=none",
            ]
        return ["--bind-address=127.0.0.1", f"--advertise-address={self.pod_facing_address}"]

    def _audit_args(self) -> list[str]:
        if self.audit_policy is None:
            return []
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(self.audit_policy))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # no silent drops: every write is counted
            "--audit-log-maxsize=4096",
            "--audit-log-maxbackup=20",
        ]

    def _api_qps_args(self) -> list[str]:
        if self.component_api_qps is None:
            return []
        return [
            f"--kube-api-qps={self.component_api_qps}",
            f"--kube-api-burst={2 * self.component_api_qps}",
        ]

    def _component_common(self, kubeconfig: Path, port: int) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--leader-elect=false",
            "--v=1",
        ]

    def _controller_manager_args(self, kubeconfig: Path) -> list[str]:
        assert self.ports is not None
        assert self._ca is not None
        return [
            *self._component_common(kubeconfig, self.ports.controller_manager),
            f"--cert-dir={self.state_dir / 'kcm-certs'}",
            # Each controller acts as its own ServiceAccount, as in a production cluster, so
            # RBAC is exercised for the controllers too.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
            f"--root-ca-file={self._ca.cert_path}",
            f"--cluster-signing-cert-file={self._ca.cert_path}",
            f"--cluster-signing-key-file={self.pki_dir / 'ca.key'}",
            "--controllers=*",
            # The PodGroup protection controller: a group goes once no pod of it runs.
            *(["--feature-gates=GenericWorkload=true"] if self.gang_scheduling else []),
            *(
                [f"--node-monitor-grace-period={self.node_monitor_grace_period}"]
                if self.node_monitor_grace_period
                else []
            ),
            *self._api_qps_args(),
        ]

    def _scheduler_args(self, kubeconfig: Path) -> list[str]:
        assert self.ports is not None
        return [
            *self._component_common(kubeconfig, self.ports.scheduler),
            f"--cert-dir={self.state_dir / 'scheduler-certs'}",
            *self._api_qps_args(),
            *(
                ["--feature-gates=GenericWorkload=true,GangScheduling=true"]
                if self.gang_scheduling
                else []
            ),
        ]

    def _kwok_args(self) -> list[str]:
        stages = resources.files(__package__).joinpath("stages.yaml").read_text()
        stages_path = self.state_dir / "kwok-stages.yaml"
        stages_path.write_text(stages)
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={stages_path}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--node-lease-duration-seconds={self.node_lease_seconds}",
            f"--cidr={POD_CIDR}",
            f"--node-ip={SIMULATED_NODE_IP}",
        ]

    # ----- readiness ------------------------------------------------------------------------
    def _ssl_context(self, client_cert: bool) -> ssl.SSLContext:
        if not client_cert:
            # Controller-manager and scheduler serve with self-signed certs on loopback.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        assert self._ca is not None
        context = ssl.create_default_context(cafile=str(self._ca.cert_path))
        context.load_cert_chain(
            self.pki_dir / "client-admin.crt", self.pki_dir / "client-admin.key"
        )
        return context

    def _get(self, port: int, path: str, *, client_cert: bool = True) -> str:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}{path}",
            context=self._ssl_context(client_cert),
            timeout=2,
        ) as response:
            return response.read().decode()

    def _etcd_context(self) -> ssl.SSLContext:
        """TLS to etcd as the API server's etcd client (the only certificate etcd takes)."""
        assert self._ca is not None
        context = ssl.create_default_context(cafile=str(self._ca.cert_path))
        context.load_cert_chain(
            self.pki_dir / "client-kube-apiserver-etcd-client.crt",
            self.pki_dir / "client-kube-apiserver-etcd-client.key",
        )
        return context

    def _etcd_healthy(self) -> bool:
        assert self.ports is not None
        with urllib.request.urlopen(
            f"https://127.0.0.1:{self.ports.etcd_client}/health",
            timeout=2,
            context=self._etcd_context(),
        ) as response:
            return json.loads(response.read()).get("health") == "true"

    def create_nodes(self, pools: NodePools | None = None) -> None:
        """Create the Nodes of every pool (status included); existing ones are left as they are."""
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            for node in (pools or self.node_pools).nodes():
                try:
                    core.create_node(node)
                except ApiException as error:
                    if error.status != 409:
                        raise

    def _all_nodes_ready(self) -> bool:
        expected = {n["metadata"]["name"] for n in self.node_pools.nodes()}  # simulated ones
        with self.api_client() as api:
            nodes = k8s.CoreV1Api(api).list_node().items
        ready = {
            n.metadata.name
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        }
        return expected <= ready

    def _service_account_exists(self, namespace: str) -> bool:
        with self.api_client() as api:
            try:
                k8s.CoreV1Api(api).read_namespaced_service_account("default", namespace)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
        return True


def default_state_dir() -> Path:
    configured = os.environ.get("TFJOB_LOCAL_CLUSTER_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tfjob-operator" / "local-cluster"
