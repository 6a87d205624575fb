"""Every example that names its own image runs a script that image contains: the image is one
this repository builds (an images/*/Dockerfile titled so), and the script the command
runs is copied into the image's working directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def image_files(title: str) -> tuple[str, set[str]]:
    """The working directory of the image titled ``title`` and the files copied into it."""
    found = [
        text
        for text in (path.read_text() for path in (ROOT / "images").glob("*/Dockerfile"))
        if f'org.opencontainers.image.title="{title}"' in text
    ]
    assert len(found) == 1, f"no image of this repository is titled {title}"
    dockerfile = found[0]
    (workdir,) = re.findall(r"^WORKDIR (\S+)", dockerfile, re.MULTILINE)
    files: set[str] = set()
    for source, target in re.findall(r"^COPY (?!--from)(\S+) (\S+)$", dockerfile, re.MULTILINE):
        where = workdir if target in ("./", ".") else target
        path = ROOT / source
        names = [p.name for p in path.iterdir()] if path.is_dir() else [path.name]
        files |= {f"{where.rstrip('/')}/{name}" for name in names}
    return workdir, files


def commands(manifest: dict) -> list[tuple[str, list[str]]]:
    found = []
    for replica in (manifest["spec"].get("tfReplicaSpecs") or {}).values():
        for container in replica["template"]["spec"]["containers"]:
            if container.get("command"):
                found.append((container["image"], container["command"]))
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_scripts_are_in_their_images(path: Path) -> None:
    for image, command in commands(yaml.safe_load(path.read_text())):
        title = image.split(":")[0]
        workdir, files = image_files(title)
        for script in (arg for arg in command if arg.endswith(".py")):
            resolved = script if script.startswith("/") else f"{workdir}/{script}"
            assert resolved in files, f"{path.name}: {image} has no {resolved}"


def test_the_kubeflow_example_is_checked() -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "kubeflow-parameter-server.yaml").read_text())
    assert len(commands(manifest)) == 4
