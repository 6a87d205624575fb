"""A job's `pipPackages`, installed before its script starts, layered over the image's Python.

An init container of the trainer's own image runs pip_layer.py: a virtual environment in an
emptyDir that sees the image's packages, with pip run in it. pip counts what the image has as
installed, so it fetches only what is missing, and a version the image has but the job asks to
change lands in the layer: the image's environment is never modified. The trainer then runs the
layer's Python. Everything here is pure.

The index is PyPI unless the job (spec.packageIndex) or the operator's settings name one; its
credentials come from a Secret of type kubernetes.io/basic-auth, through the environment of the
init container only, and pip never prints them.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

from tfjob_operator.api.v1alpha1 import PackageIndex

from .injected import like_the_trainer
from .topology import TRAINER_CONTAINER

PACKAGES_CONTAINER = "tfjob-packages"
PACKAGES_VOLUME = "tfjob-packages"
PACKAGES_MOUNT = "/opt/tfjob/packages"
# The layer's interpreter: the image's Python, with the job's packages in front of the image's.
PACKAGES_PYTHON = f"{PACKAGES_MOUNT}/bin/python"
INDEX_URL_VARIABLE = "TFJOB_PIP_INDEX_URL"
USERNAME_VARIABLE = "TFJOB_PIP_USERNAME"
PASSWORD_VARIABLE = "TFJOB_PIP_PASSWORD"  # noqa: S105 (a variable name, not a password)

# The init container's program: inpod/pip_layer.py's text, run by the image's own Python.
INSTALL = resources.files("tfjob_operator.inpod").joinpath("pip_layer.py").read_text()
TERMINATION_LOG = "/dev/termination-log"


def index_environment(index: PackageIndex | None) -> list[dict[str, Any]]:
    """The init container's variables that name the index and its credentials."""
    if index is None:
        return []
    env: list[dict[str, Any]] = [{"name": INDEX_URL_VARIABLE, "value": index.url}]
    if index.credentials_secret:
        env += [
            {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": index.credentials_secret, "key": key}},
            }
            for variable, key in ((USERNAME_VARIABLE, "username"), (PASSWORD_VARIABLE, "password"))
        ]
    return env


def apply_packages(
    template: dict[str, Any], packages: list[str], index: PackageIndex | None
) -> dict[str, Any]:
    """The pod template with `packages` installed by an init container before the trainer runs,
    the trainer running the layer's Python (its command must start with `python`)."""
    template = copy.deepcopy(template)
    spec = template["spec"]
    trainer = next(c for c in spec["containers"] if c["name"] == TRAINER_CONTAINER)
    mount = {"name": PACKAGES_VOLUME, "mountPath": PACKAGES_MOUNT}
    spec.setdefault("volumes", []).append({"name": PACKAGES_VOLUME, "emptyDir": {}})
    # The trainer's own variables (a proxy, PIP_* settings) apply to the install too.
    variables = [v for v in trainer.get("env", []) if not v["name"].startswith("TFJOB_PIP_")]
    init: dict[str, Any] = {
        "name": PACKAGES_CONTAINER,
        "image": trainer["image"],
        "command": ["python", "-c", INSTALL, PACKAGES_MOUNT, TERMINATION_LOG, *packages],
        "env": [*variables, *index_environment(index)],
        # The trainer's volumes too, so a package can come from the shipped source ("./lib").
        "volumeMounts": [*trainer.get("volumeMounts", []), mount],
        **like_the_trainer(trainer),
    }
    if "workingDir" in trainer:
        init["workingDir"] = trainer["workingDir"]
    spec.setdefault("initContainers", []).append(init)
    trainer.setdefault("volumeMounts", []).append(mount)
    command = trainer.get("command") or []
    if command[:1] == ["python"]:
        trainer["command"] = [PACKAGES_PYTHON, *command[1:]]
    return template
