"""A job's checkpoint volume in its pods: the claim mounted into the trainer container, and the
job's own directory on it named in TFJOB_CHECKPOINT_DIR for the script. Pure."""

from __future__ import annotations

import posixpath
from typing import Any

from tfjob_operator.api.v1alpha1 import CHECKPOINT_DIR_ENV, Checkpoint

CHECKPOINT_VOLUME = "tfjob-checkpoint"


def checkpoint_directory(checkpoint: Checkpoint, job_name: str) -> str:
    """Where a job's script keeps its progress: a directory of the job's name, so that jobs
    sharing a claim never restore each other's training."""
    return posixpath.join(checkpoint.mount_path, job_name)


def apply_checkpoint(
    pod_spec: dict[str, Any], trainer: dict[str, Any], checkpoint: Checkpoint, job_name: str
) -> None:
    """Mount the job's checkpoint claim into the trainer container and say where to write.

    A volume or mount of the same name in the template gives way: the job's checkpoint is what
    TFJOB_CHECKPOINT_DIR points at, so it must be the claim the spec names.
    """
    volume = {
        "name": CHECKPOINT_VOLUME,
        "persistentVolumeClaim": {"claimName": checkpoint.persistent_volume_claim.claim_name},
    }
    pod_spec["volumes"] = [
        *(v for v in pod_spec.get("volumes") or [] if v.get("name") != CHECKPOINT_VOLUME),
        volume,
    ]
    trainer["volumeMounts"] = [
        *(m for m in trainer.get("volumeMounts") or [] if m.get("name") != CHECKPOINT_VOLUME),
        {"name": CHECKPOINT_VOLUME, "mountPath": checkpoint.mount_path},
    ]
    trainer["env"] = [
        *(e for e in trainer.get("env") or [] if e.get("name") != CHECKPOINT_DIR_ENV),
        {"name": CHECKPOINT_DIR_ENV, "value": checkpoint_directory(checkpoint, job_name)},
    ]
