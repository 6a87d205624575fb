"""Pack a local folder into the ConfigMap a job's shipped code travels in. Runs on the user's
machine (the SDK, `kubectl tfjob`, `tfjob-operator submit`), never in the operator."""

from __future__ import annotations

import base64
import fnmatch
import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from tfjob_operator.api.labels import JOB_NAME_LABEL
from tfjob_operator.core.source import ARCHIVE_KEY, source_config_map_name

# A ConfigMap holds at most 1 MiB; the archive and its key must fit, with room to spare.
MAX_ARCHIVE_BYTES = 1_000_000
# Never shipped: version control, caches and notebooks' checkpoints.
EXCLUDED = (".git", ".hg", ".svn", "__pycache__", "*.pyc", ".ipynb_checkpoints", ".DS_Store")


class SourceError(ValueError):
    """A directory that cannot be shipped as it is: nothing has been created."""


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
