"""MPI (Horovod) jobs: hostfile, SSH key Secret, and what launcher and workers need. Pure, except
``generate_ssh_keypair``.

The workers run sshd and wait; once they are Ready the launcher runs mpirun (or horovodrun),
which reaches every worker by its stable DNS name over SSH with the job's own key pair.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tfjob_operator.api.v1alpha1 import MPIImplementation, MPISpec

SSH_MOUNT = "/etc/tfjob/ssh"
SSH_PRIVATE_KEY = "ssh-privatekey"  # the key kubernetes.io/ssh-auth Secrets carry
SSH_PUBLIC_KEY = "ssh-publickey"
AUTHORIZED_KEYS = "authorized_keys"
HOSTFILE_DIR = "/etc/mpi"
HOSTFILE_KEY = "hostfile"
HOSTFILE = f"{HOSTFILE_DIR}/{HOSTFILE_KEY}"
SSH_VOLUME = "tfjob-ssh"
HOSTFILE_VOLUME = "tfjob-mpi-hostfile"


def ssh_secret_name(job_name: str, job_uid: str) -> str:
    """`<job>-ssh-<first 8 of the job's uid>`: no other object holds it (a deleted job of the
    same name had another uid), so the operator never needs to read a Secret to know the one
    of this name is the job's."""
    return f"{job_name}-ssh-{job_uid[:8]}"


def hostfile_config_map_name(job_name: str) -> str:
    return f"{job_name}-mpi"


def generate_ssh_keypair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair in OpenSSH formats: (private key, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public + b" tfjob-operator\n"


def hostfile(hosts: list[str], slots: int, implementation: MPIImplementation) -> str:
    """Each worker's stable DNS name with its slots, in the chosen MPI's format."""
    if implementation is MPIImplementation.OPEN_MPI:
        return "".join(f"{host} slots={slots}\n" for host in hosts)
    return "".join(f"{host}:{slots}\n" for host in hosts)  # Intel MPI and MPICH (Hydra)


def ssh_options(port: int) -> str:
    """How the launcher's MPI calls ssh: the job's key, the workers' port, no host-key prompt
    (worker host keys are born with their pods, so nothing could be pinned in advance)."""
    return (
        f"-i {SSH_MOUNT}/{SSH_PRIVATE_KEY} -p {port} -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    )


def launcher_env(mpi: MPISpec, *, hide_gpus: bool) -> list[dict[str, str]]:
    """Environment of the launcher's MPI, per implementation."""
    ssh = ssh_options(mpi.ssh_port)
    if mpi.implementation is MPIImplementation.OPEN_MPI:
        env = {
            "OMPI_MCA_orte_default_hostfile": HOSTFILE,
            "OMPI_MCA_plm_rsh_args": ssh,
            # Workers are known by their FQDNs; OpenMPI must not shorten them.
            "OMPI_MCA_orte_keep_fqdn_hostnames": "true",
            "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        }
    elif mpi.implementation is MPIImplementation.INTEL:
        env = {
            "I_MPI_HYDRA_HOST_FILE": HOSTFILE,
            "I_MPI_HYDRA_BOOTSTRAP": "ssh",
            "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS": ssh,
        }
    else:
        env = {
            "HYDRA_HOST_FILE": HOSTFILE,
            "HYDRA_LAUNCHER": "ssh",
            "HYDRA_LAUNCHER_EXTRA_ARGS": ssh,
        }
    if hide_gpus:
        # The launcher only starts processes elsewhere: it must not grab a GPU itself.
        env |= {"NVIDIA_VISIBLE_DEVICES": "", "CUDA_VISIBLE_DEVICES": ""}
    return [{"name": name, "value": value} for name, value in env.items()]


def sshd_command(port: int) -> list[str]:
    """What an estimator-style worker runs: sshd in the foreground, accepting the job's key."""
    options = [
        "-p",
        str(port),
        "-o",
        f"AuthorizedKeysFile={SSH_MOUNT}/{AUTHORIZED_KEYS}",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "PermitRootLogin=prohibit-password",
        "-o",
        "StrictModes=no",
        "-o",
        "PidFile=none",
    ]
    return [
        "/bin/sh",
        "-c",
        'mkdir -p /run/sshd 2>/dev/null; exec /usr/sbin/sshd -D -e "$@"',
        "sshd",
        *options,
    ]


FORWARDED_ALWAYS = ("PATH", "TF_USE_LEGACY_KERAS=1")


def mpirun_command(processes: int, script: list[str], forwarded: list[str]) -> list[str]:
    """What an estimator-style launcher runs: every process, slot by slot, on the workers.

    The ranks start under the workers' sshd, which gives them a fresh login environment: only
    what `-x` names reaches them. So PATH (the image's venv), Keras 2, and every variable
    the job sets (`forwarded`, by name: the launcher holds them too) go along.
    """
    names = [*FORWARDED_ALWAYS]
    given = {item.split("=", 1)[0] for item in names}
    names += [name for name in dict.fromkeys(forwarded) if name not in given]
    exports = [part for name in names for part in ("-x", name)]
    return [
        "mpirun",
        "-np",
        str(processes),
        "-bind-to",
        "none",
        "-map-by",
        "slot",
        *exports,
        *script,
    ]


def ssh_secret(
    name: str,
    namespace: str,
    labels: dict[str, str],
    owner: dict[str, Any],
    private_key: bytes,
    public_key: bytes,
) -> dict[str, Any]:
    def encoded(value: bytes) -> str:
        return base64.b64encode(value).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/ssh-auth",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "data": {
            SSH_PRIVATE_KEY: encoded(private_key),
            SSH_PUBLIC_KEY: encoded(public_key),
            AUTHORIZED_KEYS: encoded(public_key),
        },
    }


def hostfile_config_map(
    name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any], text: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "data": {HOSTFILE_KEY: text},
    }


def _mount(
    pod_spec: dict[str, Any], container: dict[str, Any], volume: dict[str, Any], mount_path: str
) -> None:
    volumes = pod_spec.setdefault("volumes", [])
    if not any(v["name"] == volume["name"] for v in volumes):
        volumes.append(volume)
    mounts = container.setdefault("volumeMounts", [])
    if not any(m["name"] == volume["name"] for m in mounts):
        mounts.append({"name": volume["name"], "mountPath": mount_path, "readOnly": True})


def _non_root_group(pod_spec: dict[str, Any], container: dict[str, Any]) -> int | None:
    """The group to own the job's key when the pod declares a non-root user, else None.

    Secret files belong to root. A root ssh or sshd wants its key 0600; a non-root one can
    read a root-owned key only through a group, and then does not check the mode (the file is
    not its own). The container's securityContext wins over the pod's, as in Kubernetes.
    """
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    user = own.get("runAsUser", pod.get("runAsUser"))
    if not user:  # root, or not said: the image's USER is not known here
        return None
    group = own.get("runAsGroup", pod.get("runAsGroup"))
    return int(group if group is not None else user)


def _mount_ssh_key(pod_spec: dict[str, Any], container: dict[str, Any], secret_name: str) -> None:
    """The job's key pair at SSH_MOUNT, readable by the user the pod runs as.

    Root: mode 0600, as ssh demands of its own key. A declared non-root user: mode 0440 and
    the pod's fsGroup (unless it names one) set to that user's group, which Kubernetes adds to
    every container's groups and gives the Secret's files.
    """
    mode = 0o600
    group = _non_root_group(pod_spec, container)
    if group is not None:
        mode = 0o440
        pod_spec.setdefault("securityContext", {}).setdefault("fsGroup", group)
    volume = {"name": SSH_VOLUME, "secret": {"secretName": secret_name, "defaultMode": mode}}
    _mount(pod_spec, container, volume, SSH_MOUNT)


def decorate_worker(
    pod_spec: dict[str, Any], container: dict[str, Any], ssh_secret: str, mpi: MPISpec
) -> None:
    _mount_ssh_key(pod_spec, container, ssh_secret)
    ports = container.setdefault("ports", [])
    if not any(p.get("name") == "ssh" for p in ports):
        ports.append({"name": "ssh", "containerPort": mpi.ssh_port, "protocol": "TCP"})
    container.setdefault(
        "readinessProbe",
        {"tcpSocket": {"port": mpi.ssh_port}, "initialDelaySeconds": 1, "periodSeconds": 2},
    )


def decorate_launcher(
    pod_spec: dict[str, Any],
    container: dict[str, Any],
    job_name: str,
    mpi: MPISpec,
    *,
    ssh_secret: str,
    hide_gpus: bool,
) -> None:
    _mount_ssh_key(pod_spec, container, ssh_secret)
    _mount(
        pod_spec,
        container,
        {"name": HOSTFILE_VOLUME, "configMap": {"name": hostfile_config_map_name(job_name)}},
        HOSTFILE_DIR,
    )
    env = {e["name"]: e for e in container.get("env") or []}
    for variable in launcher_env(mpi, hide_gpus=hide_gpus):
        env.setdefault(variable["name"], variable)  # what the user set wins
    container["env"] = list(env.values())
