"""A real node for the local cluster: the kubelet v1.36 with Debian's containerd and runc and
the CNI bridge, running pods as containers of the images `tfjob-local images` built.

What this machine needs of it (each measured on this project's machines):
- runc, not crun (crun refuses hybrid cgroups), and containerd's `restrict_oom_score_adj`
  (the VM has no CAP_SYS_RESOURCE);
- the kubelet's `failCgroupV1: false`, and a cgroup root made by hand in every v1 hierarchy;
- the node IP as a /32 on lo (no dummy interfaces);
- a pause image of our own, built here from pause.c.
Images move from buildah's storage into containerd with skopeo and `ctr images import`.

With a DNS identity, the node runs the cluster DNS too: CoreDNS (built by `binaries`) on the
node IP, which pods reach through their bridge, answering for cluster.local and nothing else
(pods have no way out of the machine). With a proxy identity it runs kube-proxy (iptables), so
pods reach ClusterIP Services, the API server's `kubernetes` Service among them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import binaries, host_packages, processes
from .images import Buildah, images_root
from .network import CLUSTER_DOMAIN, NODE_IP, SERVICE_CLUSTER_IP_RANGE

TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "skopeo": "skopeo",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "gcc": "gcc",
    "ip": "iproute2",
    "iptables": "iptables",
}
PAUSE_IMAGE = "localhost/tfjob-pause:1"
CGROUP_V1 = Path("/sys/fs/cgroup")
DNS_USER = "tfjob:coredns"


def dns_permissions(user: str = DNS_USER) -> list[dict[str, Any]]:
    """What CoreDNS's kubernetes plugin reads, granted to ``user``: apply before it starts."""
    name = user.replace(":", "-")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["services", "endpoints", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    return [role, binding]


def _accepts(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2):
        return True


def _says_ok(url: str) -> bool:
    """Whether ``url`` answers 200 (wait_until takes an error for a no)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not a loopback URL: {url}")
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - checked above
        return bool(response.status == 200)


# The iptables chains a kubelet makes for itself, by table, and where it jumps to them.
KUBELET_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-KUBELET-CANARY",),
    "mangle": ("KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"),
}
KUBELET_JUMPS = (("filter", "INPUT", "KUBE-FIREWALL"), ("filter", "OUTPUT", "KUBE-FIREWALL"))


def _kubelet_chains_gone() -> None:
    """The kubelet's own iptables chains, which outlive it (kube-proxy --cleanup leaves them)."""

    def iptables(*args: str) -> None:
        subprocess.run(["iptables", "-w", *args], check=False, capture_output=True)

    for table, chain, target in KUBELET_JUMPS:
        iptables("-t", table, "-D", chain, "-j", target)
    for table, chains in KUBELET_CHAINS.items():
        for chain in chains:
            iptables("-t", table, "-F", chain)
            iptables("-t", table, "-X", chain)


def _archive(name: str, out: Path) -> Path:
    """An image of buildah's storage as a docker-archive, for `ctr images import`."""
    buildah = Buildah(images_root())
    store = f"[overlay@{buildah.root / 'storage'}+{buildah.root / 'run'}]"
    done = subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"containers-storage:{store}{name}",
            f"docker-archive:{out}:{name}",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        out.unlink(missing_ok=True)
        free = shutil.disk_usage(out.parent).free / 2**30
        raise RuntimeError(
            f"skopeo could not export {name} to {out} ({free:.1f} GiB free there; it also "
            f"stages layers in /var/tmp): {done.stderr.strip()}"
        )
    return out


def cached_archive(name: str) -> Path:
    """The docker-archive of an image of buildah's storage, made once per image ID and kept
    beside the images (a few GB saved from every node's scratch space, and about 10 s from
    every load); the archive of an earlier build of the same name is removed."""
    found = Buildah(images_root()).image(name)
    if found is None:
        raise RuntimeError(f"no image {name} in {images_root()}: run `make images` first")
    folder = images_root() / "archives"
    folder.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() or c in "-." else "_" for c in name)
    out = folder / f"{slug}@{str(found['id'])[:12]}.tar"
    if out.exists():
        return out
    for older in folder.glob(f"{slug}@*"):
        older.unlink(missing_ok=True)
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")  # never taken as finished
    return _archive(name, partial).rename(out)


@dataclass
class RealNode:
    """One node: containerd and a kubelet, registered as ``name`` with the cluster."""

    name: str
    state_dir: Path
    kubeconfig: Path  # as system:node:<name>
    dns_kubeconfig: Path | None = None  # as DNS_USER, granted dns_permissions(): run the DNS
    proxy_kubeconfig: Path | None = None  # as system:kube-proxy: run kube-proxy
    service_subnet: str = SERVICE_CLUSTER_IP_RANGE
    node_ip: str = NODE_IP
    # Outside kwok's 10.244.0.0/16, so no simulated pod's address is ever a real one.
    pod_subnet: str = "10.245.77.0/24"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[str] = field(default_factory=list)
    # The cluster's CA: the kubelet takes the API server's client certificate by it, and asks
    # the API server who may do what (no anonymous request, nobody allowed by default).
    client_ca: Path | None = None
    # The API server's port on loopback: its pods reach it there at the node's address.
    api_port: int | None = None
    detach: bool = False  # outlive the Python process that started it (`tfjob-local up`)
    running: list[processes.RunningProcess] = field(default_factory=list)
    forwarding: str = "0"  # net.ipv4.ip_forward before the start, restored at stop

    def to_dict(self) -> dict[str, Any]:
        """What `tfjob-local down` needs to stop a detached node: see from_dict."""
        return {
            "name": self.name,
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig),
            "node_ip": self.node_ip,
            "pod_subnet": self.pod_subnet,
            "forwarding": self.forwarding,
            "processes": [process.to_dict() for process in self.running],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RealNode:
        return cls(
            name=data["name"],
            state_dir=Path(data["state_dir"]),
            kubeconfig=Path(data["kubeconfig"]),
            node_ip=data["node_ip"],
            pod_subnet=data["pod_subnet"],
            detach=True,
            running=[processes.RunningProcess.from_dict(p) for p in data["processes"]],
            forwarding=data["forwarding"],
        )

    def alive(self) -> bool:
        return bool(self.running) and all(process.alive() for process in self.running)

    @property
    def sockets(self) -> Path:
        """Where containerd's socket and the kubelet's root (which holds sockets too) live: a
        short path, as a socket's has at most 107 bytes and a test's state directory can be
        longer; named after that directory, so nodes never share it. Removed at stop."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path("/var/lib") / f"tfjob-node-{digest}"  # root's, on disk (emptyDirs)

    @property
    def socket(self) -> Path:
        return self.sockets / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.sockets / "kubelet"

    @property
    def bridge(self) -> str:
        return f"tfjob-{self.name}"[:15]  # an interface name has at most 15 characters

    @property
    def cgroup_root(self) -> str:
        return f"/tfjob-{self.name}"

    # ----- start and stop ------------------------------------------------------------------
    def start(self) -> None:
        host_packages.ensure(TOOLS, "a real node")
        binaries.ensure_built(["kubernetes-node"])
        kubelet = binaries.binary("kubelet")
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        self._address(add=True)
        if self.api_port is not None:
            self._forward_api(logs)
        self._cgroups(make=True)
        self.running.append(
            processes.start(
                f"containerd-{self.name}",
                ["containerd", "--config", str(self._containerd_config())],
                logs,
                detach=self.detach,
            )
        )
        processes.wait_until(self.socket.exists, timeout=30, what="containerd's socket")
        self.load_image(PAUSE_IMAGE, self._pause_archive())
        if self.dns_kubeconfig is not None:
            self._start_dns(logs)
        self.running.append(
            processes.start(
                f"kubelet-{self.name}",
                [
                    str(kubelet),
                    f"--config={self._kubelet_config()}",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--hostname-override={self.name}",
                    f"--node-ip={self.node_ip}",
                    f"--root-dir={self.kubelet_root}",
                    f"--cert-dir={self.kubelet_root / 'pki'}",
                    "--node-labels=" + ",".join(f"{k}={v}" for k, v in self.labels.items()),
                    *([f"--register-with-taints={','.join(self.taints)}"] if self.taints else []),
                    "--v=1",
                ],
                logs,
                detach=self.detach,
            )
        )
        if self.proxy_kubeconfig is not None:  # after the kubelet: it waits for its Node
            self._start_proxy(logs)

    def _forward_api(self, logs: Path) -> None:
        """The API server, which listens on loopback alone, at the node's address: the
        `kubernetes` Service's endpoint, where the node's pods reach it."""
        assert self.api_port is not None
        argv = [sys.executable, "-m", "tfjob_localcluster.forward"]
        argv += [self.node_ip, str(self.api_port), "127.0.0.1", str(self.api_port)]
        process = processes.start(f"api-forward-{self.name}", argv, logs, detach=self.detach)
        self.running.append(process)
        processes.wait_until(
            lambda: _accepts(self.node_ip, self.api_port),  # type: ignore[arg-type]
            timeout=30,
            what=f"the API server at {self.node_ip}:{self.api_port}",
            process=process,
        )

    def _start_dns(self, logs: Path) -> None:
        """CoreDNS on the node IP's port 53, ready once it has read the cluster's Services."""
        binaries.ensure_built(["coredns"])
        ready = processes.free_port()
        corefile = self.state_dir / "Corefile"
        corefile.write_text(
            f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{
    bind {self.node_ip}
    ready 127.0.0.1:{ready}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {self.dns_kubeconfig}
        pods insecure
        ttl 5
    }}
}}
"""
        )
        self._serve(
            "coredns",
            [str(binaries.binary("coredns")), "-conf", str(corefile)],
            logs,
            f"http://127.0.0.1:{ready}/ready",
            timeout=60,
        )

    def _start_proxy(self, logs: Path) -> None:
        """kube-proxy in iptables mode, its NodePorts on the node IP only, the host's conntrack
        sysctls left as they are. Healthy once it has written the Services' rules."""
        health, metrics = processes.free_port(), processes.free_port()
        config = self.state_dir / "kube-proxy.yaml"
        document = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.proxy_kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": self.name,
            "clusterCIDR": self.pod_subnet,
            "healthzBindAddress": f"127.0.0.1:{health}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            "nodePortAddresses": [f"{self.node_ip}/32"],
            "bindAddress": self.node_ip,
            "iptables": {"localhostNodePorts": False},
            # 0: leave the host's conntrack table size and timeouts alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        config.write_text(yaml.safe_dump(document))
        self._serve(
            "kube-proxy",
            [str(binaries.binary("kube-proxy")), f"--config={config}", "--v=1"],
            logs,
            f"http://127.0.0.1:{health}/healthz",
            timeout=90,
        )

    def _serve(self, name: str, argv: list[str], logs: Path, ready: str, timeout: float) -> None:
        """Start one of the node's servers; return once ``ready`` (a URL on loopback) says 200."""
        process = processes.start(f"{name}-{self.name}", argv, logs, detach=self.detach)
        self.running.append(process)
        processes.wait_until(
            lambda: _says_ok(ready), timeout=timeout, what=f"{name} at {ready}", process=process
        )

    def stop(self, *, keep_images: bool = False) -> None:
        """Stop the node and remove what it made; with ``keep_images``, containerd's store
        stays, for a start again with the same state directory (images and all)."""
        proxied = any(p.name.startswith("kube-proxy-") for p in self.running)
        kubelet = [p for p in self.running if p.name.startswith("kubelet")]
        for process in kubelet:
            process.stop(grace_seconds=10)
        self._containers_gone()
        for process in reversed(self.running):
            if process not in kubelet:
                process.stop(grace_seconds=10)
        self.running.clear()
        self._leftover_processes_gone()
        if proxied or not self.detach:  # its rules outlive it (and a killed run's too)
            proxy = binaries.COMPONENTS["kubernetes-node"].path("kube-proxy")
            if proxy.exists():
                subprocess.run([str(proxy), "--cleanup"], check=False, capture_output=True)
        _kubelet_chains_gone()
        self._unmount()
        shutil.rmtree(self.sockets, ignore_errors=True)
        # containerd's image store and its containers' snapshots: gigabytes per node that
        # nothing reads once it stopped for good (its logs and the pods' logs stay).
        if not keep_images:
            for scratch in ("root", "state"):
                shutil.rmtree(self.state_dir / "containerd" / scratch, ignore_errors=True)
        self._cgroups(make=False)
        self._address(add=False)

    def _unmount(self) -> None:
        """What the kubelet and containerd left mounted under the node's directory (the
        kubelet's own root, pod volumes, container root filesystems), deepest first."""
        inside = tuple(str(d.resolve()) + "/" for d in (self.state_dir, self.sockets))
        mounts = [
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if (line.split()[1] + "/").startswith(inside)
        ]
        for mount in sorted(set(mounts), key=lambda m: -m.count("/")):
            subprocess.run(["umount", "--lazy", mount], check=False, capture_output=True)

    # ----- images --------------------------------------------------------------------------
    def load_image(
        self, name: str, archive: Path | None = None, *, also: tuple[str, ...] = ()
    ) -> None:
        """An image of buildah's storage (or a docker-archive) into containerd's k8s.io store,
        under its name and the names in ``also``."""
        ctr = ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", "images"]
        archive = archive or cached_archive(name)
        subprocess.run(
            [*ctr, "import", "--no-unpack", str(archive)], check=True, capture_output=True
        )
        for alias in also:
            subprocess.run([*ctr, "tag", "--force", name, alias], check=True, capture_output=True)

    def _pause_archive(self) -> Path:
        """The sandbox image: pause.c built static, alone in an image (cached by its source,
        beside the images, for every node)."""
        source = resources.files("tfjob_localcluster").joinpath("pause.c").read_bytes()
        out = images_root() / f"pause-{hashlib.sha256(source).hexdigest()[:12]}.tar"
        if out.exists():
            return out
        buildah = Buildah(images_root())
        with tempfile.TemporaryDirectory() as scratch:
            binary = Path(scratch) / "pause"
            c_file = Path(scratch) / "pause.c"
            c_file.write_bytes(source)
            subprocess.run(["gcc", "-Os", "-static", "-o", str(binary), str(c_file)], check=True)
            container = buildah.run("from", "scratch", capture=True).strip()
            try:
                buildah.run("copy", container, str(binary), "/pause", capture=True)
                buildah.run("config", "--entrypoint", '["/pause"]', container)
                buildah.run("commit", "--quiet", container, PAUSE_IMAGE, capture=True)
            finally:
                subprocess.run(buildah.argv("rm", container), capture_output=True, check=False)
            partial = out.with_name(out.name + ".partial")  # never taken for a finished one
            partial.unlink(missing_ok=True)
            _archive(PAUSE_IMAGE, partial).rename(out)
        return out

    # ----- configuration -------------------------------------------------------------------
    def _containerd_config(self) -> Path:
        root = self.state_dir / "containerd"
        cni = self.state_dir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-tfjob.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "tfjob-pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": self.bridge,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(cni / "ipam"),
                                "ranges": [[{"subnet": self.pod_subnet}]],
                                # The node IP (DNS, kubelet) and Services, by the gateway.
                                "routes": [
                                    {"dst": self.pod_subnet},
                                    {"dst": f"{self.node_ip}/32"},
                                    {"dst": self.service_subnet},
                                ],
                            },
                        },
                        {"type": "loopback"},
                    ],
                }
            )
        )
        config = root / "config.toml"
        root.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni / "net.d"}"
"""
        )
        return config

    def _kubelet_config(self) -> Path:
        path = self.state_dir / "kubelet-config.yaml"
        document = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.node_ip,
            "port": 10250,
            "readOnlyPort": 0,
            # As a real cluster's: the API server proves itself with its client certificate
            # (logs, exec); the API server says who may do what. No anonymous request.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                **({"x509": {"clientCAFile": str(self.client_ca)}} if self.client_ca else {}),
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.state_dir / "pod-logs"),
            "maxPods": 20,
            **(
                {"clusterDNS": [self.node_ip], "clusterDomain": CLUSTER_DOMAIN}
                if self.dns_kubeconfig is not None
                else {}
            ),
            "evictionHard": {
                "memory.available": "1%",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }
        path.write_text(yaml.safe_dump(document))
        return path

    # ----- the host ------------------------------------------------------------------------
    def _address(self, *, add: bool) -> None:
        """The node's IP on lo while it runs; the pods' bridge and the forwarding the bridge
        plugin turned on go with it."""
        forwarding = Path("/proc/sys/net/ipv4/ip_forward")
        if add:
            self.forwarding = forwarding.read_text().strip()
        else:
            subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
            forwarding.write_text(self.forwarding + "\n")
        verb = "add" if add else "del"
        subprocess.run(
            ["ip", "addr", verb, f"{self.node_ip}/32", "dev", "lo"],
            check=False,
            capture_output=True,
        )

    def _hierarchies(self) -> list[Path]:
        return [
            path
            for path in CGROUP_V1.iterdir()
            if path.is_dir() and (path / "cgroup.procs").exists()
        ]

    def _cgroups(self, *, make: bool) -> None:
        """The kubelet's cgroup root in every hierarchy (cpuset needs its cpus and mems)."""
        for hierarchy in self._hierarchies():
            mine = hierarchy / self.cgroup_root.lstrip("/")
            if make:
                mine.mkdir(exist_ok=True)
                for name in ("cpuset.cpus", "cpuset.mems"):
                    parent = hierarchy / name
                    if parent.exists() and not (mine / name).read_text().strip():
                        (mine / name).write_text(parent.read_text())
            elif mine.exists():
                for child in sorted(mine.rglob("*"), key=lambda p: -len(p.parts)):
                    if child.is_dir():
                        child.rmdir()
                mine.rmdir()

    def _leftover_processes_gone(self) -> None:
        """What outlives containerd when its run was killed: every process in the node's
        cgroups (the pods' containers), then the containerd shims that served this node."""
        pids: set[int] = set()
        for hierarchy in self._hierarchies():
            mine = hierarchy / self.cgroup_root.lstrip("/")
            for procs in mine.rglob("cgroup.procs") if mine.is_dir() else []:
                pids |= {int(pid) for pid in procs.read_text().split()}
        address = str(self.socket)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
                    pids.add(int(entry.name))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)

    def _containers_gone(self) -> None:
        """Kill the pods' containers: stopping a kubelet leaves them running."""
        if not self.socket.exists():
            return
        ctr = ["ctr", "--address", str(self.socket), "--namespace", "k8s.io"]
        listed = subprocess.run(
            [*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, check=False
        )
        for task in listed.stdout.split():
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = subprocess.run(
                [*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, check=False
            )
            if not left.stdout.split():
                break
            time.sleep(0.2)
