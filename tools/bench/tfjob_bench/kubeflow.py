"""Kubeflow's training-operator v1.9.4 out of cluster, as shipped or tuned, for the benchmark.

What it needs outside a cluster (see the research notes): its TFJob CRD (applied server-side:
611 kB is over the client-side apply annotation limit), the namespace `kubeflow` with the
Secret `training-operator-webhook-cert` holding a CA and a serving certificate with PKCS#1 keys
(its cert-controller cannot parse PKCS#8), and those files in
`/tmp/k8s-webhook-server/serving-certs`, a path compiled into it. So that nothing lands in the
machine's shared /tmp, it runs in a mount namespace of its own whose /tmp is a private folder
(and TMPDIR=/tmp, for controller-runtime's webhook server). Without its
ValidatingWebhookConfiguration the API server never calls its webhook; it logs
"Webhook not found" once and carries on.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tfjob_localcluster import binaries, processes

NAMESPACE = "kubeflow"
SECRET = "training-operator-webhook-cert"  # noqa: S105 - a name, not a secret
SERVICE_DNS = f"training-operator.{NAMESPACE}.svc"
CERT_SUBDIR = Path("k8s-webhook-server") / "serving-certs"

SHIPPED_FLAGS: tuple[str, ...] = ("--enable-scheme=tfjob", "--leader-elect=false")
TUNED_FLAGS: tuple[str, ...] = (
    "--controller-threads=16",
    "--kube-api-qps=1000",
    "--kube-api-burst=2000",
    "--zap-log-level=info",
)


def _pkcs1(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY"
        serialization.NoEncryption(),
    )


def webhook_certificates() -> dict[str, bytes]:
    """ca.crt, ca.key, tls.crt, tls.key as its cert-controller writes them (RSA, PKCS#1)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "training-operator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "training-operator-ca"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("training-operator-ca")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVICE_DNS)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))  # > 90 days: no rotation while we run
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVICE_DNS)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "ca.key": _pkcs1(ca_key),
        "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
        "tls.key": _pkcs1(key),
    }


def install(kubectl: str, admin_kubeconfig: Path, certificates: dict[str, bytes]) -> None:
    """Its CRD (server-side apply), namespace and webhook Secret."""

    def run(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [kubectl, f"--kubeconfig={admin_kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    run("apply", "--server-side", "-f", str(binaries.training_operator_crd()))
    # (kubectl wait fails outright if it looks before the CRD has any condition at all.)
    established = '{.status.conditions[?(@.type=="Established")].status}'
    processes.wait_until(
        lambda: run("get", "crd/tfjobs.kubeflow.org", "-o", f"jsonpath={established}") == "True",
        timeout=60,
        what="Kubeflow's TFJob CRD to be established",
        interval=0.2,
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in certificates.items()},
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all([namespace, secret]))


def _embedded_kubeconfig(kubeconfig: Path) -> str:
    """The same identity with its files inlined, readable inside the private mount namespace."""
    document = yaml.safe_load(kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    cluster["certificate-authority-data"] = base64.b64encode(
        Path(cluster.pop("certificate-authority")).read_bytes()
    ).decode()
    for name in ("client-certificate", "client-key"):
        user[f"{name}-data"] = base64.b64encode(Path(user.pop(name)).read_bytes()).decode()
    return yaml.safe_dump(document)


def private_tmp_supported() -> bool:
    """Whether we may give it a private /tmp (a mount namespace needs root and `unshare`)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


@dataclass
class KubeflowProcess:
    """training-operator.v1 with its own client identity, a private /tmp, loopback ports."""

    kubeconfig: Path
    log_dir: Path
    work_dir: Path
    certificates: dict[str, bytes]
    tuned: bool = False
    process: processes.RunningProcess | None = None
    probe_port: int = 0
    metrics_port: int = 0
    private_tmp: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "kubeflow-tuned" if self.tuned else "kubeflow-shipped"

    def argv(self, kubeconfig: str) -> list[str]:
        self.probe_port = processes.free_port()
        self.metrics_port = processes.free_port()
        flags = [
            *SHIPPED_FLAGS,
            f"--kubeconfig={kubeconfig}",
            f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
            f"--health-probe-bind-address=127.0.0.1:{self.probe_port}",
            f"--webhook-server-port={processes.free_port()}",
        ]
        if self.tuned:
            flags += TUNED_FLAGS
        return [self.binary, *flags]

    @property
    def binary(self) -> str:
        return str(binaries.binary("training-operator.v1"))

    def start(self, timeout: float = 120) -> processes.RunningProcess:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.private_tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-tmp-", dir=self.work_dir))
        certs = self.private_tmp / CERT_SUBDIR
        certs.mkdir(parents=True)
        for file in ("tls.crt", "tls.key"):
            (certs / file).write_bytes(self.certificates[file])
        (self.private_tmp / "kubeconfig").write_text(_embedded_kubeconfig(self.kubeconfig))
        env = {**os.environ, "MY_POD_NAMESPACE": NAMESPACE}
        if private_tmp_supported():
            # The private folder becomes /tmp for it alone; its files are then under /tmp.
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$0" /tmp && exec "$@"',
                str(self.private_tmp),
                *self.argv("/tmp/kubeconfig"),  # noqa: S108 - its private /tmp
            ]
            env["TMPDIR"] = "/tmp"  # noqa: S108 - its private /tmp
        else:
            shared = Path("/tmp") / CERT_SUBDIR  # noqa: S108 - the path compiled into it
            shared.mkdir(parents=True, exist_ok=True)
            for file in ("tls.crt", "tls.key"):
                (shared / file).write_bytes(self.certificates[file])
            self.notes.append(
                f"not root: its webhook certificate had to be written to {shared}, a path "
                "compiled into training-operator v1.9.4"
            )
            argv = self.argv(str(self.private_tmp / "kubeconfig"))
            env["TMPDIR"] = str(self.private_tmp)
        self.notes.append(
            "flags: " + " ".join(a for a in argv[argv.index(self.binary) + 1 :] if "=" in a)
        )
        self.notes.append(
            "ran without its admission webhook: no ValidatingWebhookConfiguration is installed "
            "out of cluster, so the API server never calls it (it logs 'Webhook not found' once)"
        )
        if private_tmp_supported():
            self.notes.append(
                "its webhook certificates sat in a private /tmp (a mount namespace of its own): "
                "v1.9.4 compiles /tmp/k8s-webhook-server/serving-certs into its cert rotator, so "
                "TMPDIR alone would not keep them out of the shared /tmp"
            )
        self.process = processes.start(self.name, argv, self.log_dir, detach=False, env=env)
        processes.wait_until(
            self._ready, timeout=timeout, what=f"{self.name} /readyz", process=self.process
        )
        return self.process

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.probe_port}/readyz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace_seconds=15)
            self.process = None
        if self.private_tmp is not None:
            shutil.rmtree(self.private_tmp, ignore_errors=True)
            self.private_tmp = None

    def log(self) -> str:
        if self.process is None:
            path = self.log_dir / f"{self.name}.log"
            return path.read_text(errors="replace") if path.exists() else ""
        return self.process.log_path.read_text(errors="replace")
