"""Kueue next to the local control plane: its controller out of the cluster on loopback, with
its webhooks, admitting plain pod groups in namespaces labelled `kueue-managed=true`.

Kueue is built from the Go module proxy like the other binaries (binaries.py keeps its CRDs and
webhook manifests beside it). Here:

- its 11 CRDs are applied server-side (the Workload CRD is too large for client-side apply);
- its webhook configurations are the shipped ones, trimmed to the pod integration and Kueue's
  own kinds, and pointed at `https://127.0.0.1:<port>` with a CA of our own (as envtest does),
  the pod webhooks only for labelled namespaces;
- Kueue reads its metrics certificate from the fixed path /etc/kueue/metrics/certs even with
  metrics off, so it runs in a mount namespace of its own where a throwaway pair sits there.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import binaries, processes
from .pki import CertificateAuthority

MANAGED_LABEL = "kueue-managed"
NAMESPACE = "kueue-system"
# The webhooks of the pod integration and of Kueue's own kinds; the others (Job, JobSet,
# Ray, Kubeflow...) would intercept resources whose integrations are off.
KEPT_WEBHOOKS = {
    "mpod.kb.io",
    "vpod.kb.io",
    "mworkload.kb.io",
    "vworkload.kb.io",
    "mclusterqueue.kb.io",
    "vclusterqueue.kb.io",
    "vcohort.kb.io",
    "mresourceflavor.kb.io",
    "vresourceflavor.kb.io",
}
POD_WEBHOOKS = {"mpod.kb.io", "vpod.kb.io"}


def webhook_configurations(manifests: str, url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, trimmed and pointed at ``url`` (its webhook server)."""
    configurations = []
    for document in yaml.safe_load_all(manifests):
        if not document:
            continue
        configuration = copy.deepcopy(document)
        configuration["metadata"]["name"] = f"kueue-{configuration['metadata']['name']}"
        kept = []
        for webhook in configuration.get("webhooks") or []:
            if webhook["name"] not in KEPT_WEBHOOKS:
                continue
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{url}{path}", "caBundle": ca_bundle}
            if webhook["name"] in POD_WEBHOOKS:
                webhook["namespaceSelector"] = {"matchLabels": {MANAGED_LABEL: "true"}}
            kept.append(webhook)
        configuration["webhooks"] = kept
        configurations.append(configuration)
    return configurations


def configuration(ports: dict[str, int], cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['health']}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": ports["webhook"], "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {"matchLabels": {MANAGED_LABEL: "true"}},
        "integrations": {"frameworks": ["pod"]},
    }


@dataclass
class Kueue:
    """Kueue's controller for the cluster at ``kubeconfig``, with its state in ``state_dir``."""

    kubeconfig: Path
    state_dir: Path
    log_dir: Path
    kubectl: Path
    detach: bool = False
    process: processes.RunningProcess | None = None
    ports: dict[str, int] = field(default_factory=dict)
    webhooks: list[str] = field(default_factory=list)  # kind/name of what start registered

    def _kubectl(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self, timeout: float = 120) -> None:
        directory = binaries.COMPONENTS["kueue"].directory
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority(self.state_dir / "pki", common_name="kueue-webhook-ca")
        serving = ca.issue("webhook", "kueue-webhook", server_hosts=("127.0.0.1",))
        cert_dir = self.state_dir / "webhook-certs"
        metrics_dir = self.state_dir / "etc-kueue" / "metrics" / "certs"
        for target in (cert_dir, metrics_dir):
            target.mkdir(parents=True, exist_ok=True)
            (target / "tls.crt").write_bytes(serving.cert.read_bytes())
            (target / "tls.key").write_bytes(serving.key.read_bytes())
        self.ports = {"webhook": processes.free_port(), "health": processes.free_port()}
        config = self.state_dir / "config.yaml"
        config.write_text(yaml.safe_dump(configuration(self.ports, cert_dir)))

        self._kubectl("apply", "--server-side", "-f", str(directory / binaries.KUEUE_CRDS))
        crds = yaml.safe_load_all((directory / binaries.KUEUE_CRDS).read_text())
        for crd in filter(None, crds):
            self._kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                f"crd/{crd['metadata']['name']}",
            )
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self._kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
        bundle = base64.b64encode(ca.cert_path.read_bytes()).decode()
        webhooks = webhook_configurations(
            (directory / binaries.KUEUE_WEBHOOKS).read_text(),
            f"https://127.0.0.1:{self.ports['webhook']}",
            bundle,
        )
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mkdir -p /etc/kueue && mount --bind "$0" /etc/kueue && exec "$@"',
            str(self.state_dir / "etc-kueue"),
            str(directory / "kueue"),
            f"--config={config}",
            f"--kubeconfig={self.kubeconfig}",
            "--feature-gates=VisibilityOnDemand=false",
            "--zap-log-level=info",
        ]
        self.process = processes.start("kueue", argv, self.log_dir, detach=self.detach)
        processes.wait_until(
            self._serving, timeout=timeout, what="Kueue's webhook server", process=self.process
        )
        # Only once Kueue answers: a webhook that fails closed must have its server up.
        self._kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(webhooks))
        self.webhooks = [f"{w['kind'].lower()}/{w['metadata']['name']}" for w in webhooks]

    def _serving(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ports["webhook"]), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Unregister the webhooks first (they fail closed), then stop Kueue."""
        if self.webhooks:
            with contextlib.suppress(subprocess.SubprocessError):  # the cluster may be gone
                self._kubectl("delete", "--ignore-not-found", *self.webhooks)
            self.webhooks = []
        if self.process is not None:
            self.process.stop(grace_seconds=10)
            self.process = None
