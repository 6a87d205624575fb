"""Pod networking on the local node: a bridge, and per pod a network namespace with its own IP.

Every pod gets what a kubelet and a CNI plugin would give it: its own network namespace, a veth
pair into the node's bridge, an address from the node's pod subnet, and a hosts file (bound over
/etc/hosts by `ip netns exec`) that resolves the cluster DNS names of the pods and headless
Services of its namespace from the EndpointSlices kube-controller-manager writes.
Needs root. Nothing here leaves the machine: the bridge has no uplink.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

NETNS_PREFIX = "tfjpod-"
NETNS_ETC = Path("/etc/netns")


def _ip(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class PodInterface:
    netns: str
    address: str


class NodeNetwork:
    """The node's bridge and the addresses it hands to pods."""

    def __init__(self, bridge: str, subnet: str) -> None:
        self.bridge = bridge
        self.subnet = ipaddress.ip_network(subnet)
        hosts = list(self.subnet.hosts())
        self.gateway = str(hosts[0])
        self._free = [str(h) for h in hosts[1:]]
        self._lock = threading.Lock()

    def setup(self) -> None:
        self.teardown_all()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def teardown_all(self) -> None:
        """Remove the bridge and every pod namespace a previous run may have left."""
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        )
        for line in listed.stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(NETNS_PREFIX) and self._owns(name):
                self._delete_netns(name)
        _ip("link", "del", self.bridge, check=False)

    def _owns(self, netns: str) -> bool:
        return netns.startswith(f"{NETNS_PREFIX}{self.bridge}-")

    def attach(self, pod_uid: str) -> PodInterface:
        """A fresh namespace for one pod, wired to the bridge."""
        with self._lock:
            if not self._free:
                raise RuntimeError(f"no pod address left in {self.subnet}")
            address = self._free.pop(0)
        tag = hashlib.sha256(pod_uid.encode()).hexdigest()[:8]
        netns = f"{NETNS_PREFIX}{self.bridge}-{tag}"
        host_end, pod_end = f"vh{tag}", f"vp{tag}"
        try:
            _ip("netns", "add", netns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end)
            _ip("link", "set", pod_end, "netns", netns)
            _ip("link", "set", host_end, "master", self.bridge, "up")
            _ip("link", "set", pod_end, "name", "eth0", netns=netns)
            _ip("addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0", netns=netns)
            _ip("link", "set", "eth0", "up", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
            _ip("route", "add", "default", "via", self.gateway, netns=netns)
        except Exception:
            self._delete_netns(netns)
            self.release(address)
            raise
        (NETNS_ETC / netns).mkdir(parents=True, exist_ok=True)
        return PodInterface(netns=netns, address=address)

    def detach(self, interface: PodInterface) -> None:
        self._delete_netns(interface.netns)
        self.release(interface.address)

    def release(self, address: str) -> None:
        with self._lock:
            if address not in self._free:
                self._free.append(address)

    def _delete_netns(self, netns: str) -> None:
        pids = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-KILL", pid], capture_output=True, check=False)
        # Deleting the namespace deletes its veth end, and with it the host end.
        _ip("netns", "del", netns, check=False)
        etc = NETNS_ETC / netns
        if etc.is_dir():
            for item in etc.iterdir():
                item.unlink()
            etc.rmdir()


def write_hosts(netns: str, text: str) -> None:
    """Rewrite a pod's hosts file in place.

    `ip netns exec` bind-mounts the file over /etc/hosts when the pod starts, which pins its
    inode: replacing the file would hide later updates from the running pod, truncating it
    does not.
    """
    path = NETNS_ETC / netns / "hosts"
    with path.open("a+") as hosts:
        hosts.seek(0)
        if hosts.read() == text:
            return
        hosts.seek(0)
        hosts.truncate()
        hosts.write(text)


def hosts_file(
    *,
    own_address: str,
    hostname: str,
    subdomain: str | None,
    namespace: str,
    cluster_domain: str,
    endpoints: list[tuple[str, str, str | None]],
) -> str:
    """The pod's /etc/hosts: itself, then every (service, address, hostname) endpoint known.

    Names follow cluster DNS: `<hostname>.<service>.<namespace>.svc.<domain>` for an endpoint
    with a hostname, `<service>.<namespace>.svc.<domain>` for every endpoint of a service, each
    with the shorter forms the pod's DNS search path would accept.
    """

    def names(*parts: str) -> list[str]:
        full = ".".join([*parts, namespace, "svc", cluster_domain])
        return [full, ".".join([*parts, namespace]), ".".join(parts)]

    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    own = names(hostname, subdomain) if subdomain else []
    lines.append("\t".join([own_address, " ".join([*own, hostname])]))
    for service, address, endpoint_host in sorted(endpoints):
        if endpoint_host:
            lines.append(f"{address}\t{' '.join(names(endpoint_host, service))}")
    for service, address, _ in sorted(endpoints):
        lines.append(f"{address}\t{' '.join(names(service))}")
    return "\n".join(lines) + "\n"
