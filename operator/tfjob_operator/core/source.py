"""A job's code shipped with it: a local directory packed by the client into a ConfigMap the job
owns, unpacked into the pods' working directory by an init container of the trainer's own
image; or a volume that holds the code. Packing runs on the client; the rest is pure.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from tfjob_operator.api.labels import JOB_NAME_LABEL
from tfjob_operator.api.v1alpha1 import SOURCE_MOUNT, Source

from .topology import TRAINER_CONTAINER

ARCHIVE_KEY = "source.tar.gz"
ARCHIVE_MOUNT = "/etc/tfjob/source"
ARCHIVE_VOLUME = "tfjob-source-archive"
SOURCE_VOLUME = "tfjob-source"
UNPACK_CONTAINER = "tfjob-source"
# A ConfigMap holds at most 1 MiB; the archive and its key must fit, with room to spare.
MAX_ARCHIVE_BYTES = 1_000_000
# Never shipped: version control, caches and notebooks' checkpoints.
EXCLUDED = (".git", ".hg", ".svn", "__pycache__", "*.pyc", ".ipynb_checkpoints", ".DS_Store")
# Run by the trainer's own Python, which may predate tar extraction filters (3.11.4, 3.10.12;
# Debian 12 has 3.11.2): there, only plain files and folders under relative names are taken.
UNPACK = (
    "import tarfile\n"
    f"with tarfile.open({ARCHIVE_MOUNT + '/' + ARCHIVE_KEY!r}) as archive:\n"
    "    if hasattr(tarfile, 'data_filter'):\n"
    f"        archive.extractall({SOURCE_MOUNT!r}, filter='data')\n"
    "    else:\n"
    "        for member in archive.getmembers():\n"
    "            name = member.name\n"
    "            if not (member.isfile() or member.isdir()) or name.startswith('/') "
    "or '..' in name.split('/'):\n"
    "                raise SystemExit(f'source archive: refusing {name!r}')\n"
    f"        archive.extractall({SOURCE_MOUNT!r})\n"
)


class SourceError(ValueError):
    """A directory that cannot be shipped as it is: nothing has been created."""


def source_config_map_name(job_name: str) -> str:
    return f"{job_name}-source"


def _excluded(relative: PurePosixPath) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in EXCLUDED)


def pack_directory(directory: Path, entry_script: str | None = None) -> bytes:
    """The directory as a gzipped tar (files sorted, owners and times zeroed, so the same tree
    packs the same), checked before anything is created: it exists, holds ``entry_script``,
    and fits a ConfigMap."""
    if not directory.is_dir():
        raise SourceError(f"source directory {directory} does not exist or is not a directory")
    files = sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and not _excluded(PurePosixPath(path.relative_to(directory).as_posix()))
    )
    names = {path.relative_to(directory).as_posix() for path in files}
    if entry_script is not None and PurePosixPath(entry_script).as_posix() not in names:
        raise SourceError(
            f"entry script {entry_script} is not in source directory {directory} (paths are "
            "relative to it)"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as archive:
        for path in files:
            info = archive.gettarinfo(str(path), arcname=path.relative_to(directory).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with path.open("rb") as content:
                archive.addfile(info, content)
    packed = buffer.getvalue()
    if len(packed) > MAX_ARCHIVE_BYTES:
        raise SourceError(
            f"source directory {directory} packs to {len(packed):,} bytes, more than the "
            f"{MAX_ARCHIVE_BYTES:,} a ConfigMap holds: put the code (or its data) on a volume "
            "(spec.source.persistentVolumeClaim) or in the image, or leave large files out"
        )
    return packed


def source_config_map(
    job_name: str, namespace: str, job_uid: str, archive: bytes, *, api_version: str, kind: str
) -> dict[str, Any]:
    """The ConfigMap a job's packed directory travels in: owned by the job, so it goes with it,
    and labelled with it, so the operator's watch sees it arrive."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": source_config_map_name(job_name),
            "namespace": namespace,
            "labels": {JOB_NAME_LABEL: job_name},
            "ownerReferences": [
                {
                    "apiVersion": api_version,
                    "kind": kind,
                    "name": job_name,
                    "uid": job_uid,
                    "controller": True,
                }
            ],
        },
        "binaryData": {ARCHIVE_KEY: base64.b64encode(archive).decode()},
    }


def apply_source(template: dict[str, Any], source: Source) -> dict[str, Any]:
    """The pod template with its code in place: the working directory mounted (from the volume,
    or an emptyDir an init container fills from the archive), and the trainer starting in it."""
    template = copy.deepcopy(template)
    spec = template["spec"]
    trainer = next(c for c in spec["containers"] if c["name"] == TRAINER_CONTAINER)
    volumes = spec.setdefault("volumes", [])
    mount: dict[str, Any] = {"name": SOURCE_VOLUME, "mountPath": SOURCE_MOUNT}
    if source.persistent_volume_claim is not None:
        claim = source.persistent_volume_claim
        volumes.append(
            {
                "name": SOURCE_VOLUME,
                "persistentVolumeClaim": {"claimName": claim.claim_name, "readOnly": True},
            }
        )
        mount = {
            **mount,
            "readOnly": True,
            **({"subPath": claim.sub_path} if claim.sub_path else {}),
        }
    else:
        assert source.directory is not None
        volumes += [
            {"name": SOURCE_VOLUME, "emptyDir": {}},
            {"name": ARCHIVE_VOLUME, "configMap": {"name": source.directory.config_map}},
        ]
        spec.setdefault("initContainers", []).insert(
            0,
            {
                "name": UNPACK_CONTAINER,
                "image": trainer["image"],
                "command": ["python", "-c", UNPACK],
                "volumeMounts": [
                    mount,
                    {"name": ARCHIVE_VOLUME, "mountPath": ARCHIVE_MOUNT, "readOnly": True},
                ],
            },
        )
    trainer.setdefault("volumeMounts", []).append(mount)
    trainer.setdefault("workingDir", SOURCE_MOUNT)
    return template
