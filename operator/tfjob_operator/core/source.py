"""A job's code shipped with it: a local directory packed by the client into a ConfigMap the job
owns, unpacked into the pods' working directory by an init container of the trainer's own
image; or a volume that holds the code. Pure: the packing runs on the user's machine
(client/pack.py).
"""

from __future__ import annotations

import copy
from typing import Any

from tfjob_operator.api.v1alpha1 import SOURCE_MOUNT, Source

from .injected import like_the_trainer
from .topology import TRAINER_CONTAINER

ARCHIVE_KEY = "source.tar.gz"
ARCHIVE_MOUNT = "/etc/tfjob/source"
ARCHIVE_VOLUME = "tfjob-source-archive"
SOURCE_VOLUME = "tfjob-source"
UNPACK_CONTAINER = "tfjob-source"
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


def source_config_map_name(job_name: str) -> str:
    return f"{job_name}-source"


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
                **like_the_trainer(trainer),
            },
        )
    trainer.setdefault("volumeMounts", []).append(mount)
    trainer.setdefault("workingDir", SOURCE_MOUNT)
    return template
