"""The images are correct by construction: hadolint passes, bases and packages are pinned, and the
operator image's install (what its Dockerfile copies, installed the way it installs it) starts."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

REPOSITORY = Path(__file__).resolve().parents[3]
IMAGES = REPOSITORY / "images"
DOCKERFILES = {
    name: IMAGES / name / "Dockerfile"
    for name in ("operator", "trainer-cpu", "trainer-gpu", "horovod")
}
HADOLINT = Path(sys.executable).with_name("hadolint")
# The virtualenv must see only what it installed, as in the image: no inherited module paths.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name: str) -> None:
    result = subprocess.run(
        [
            str(HADOLINT),
            "--failure-threshold",
            "style",
            "--format",
            "tty",
            "--no-color",
            str(DOCKERFILES[name]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is not a no-op: an unpinned base and pip install fail it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    result = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3006" in result.stdout
    assert "DL3013" in result.stdout


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_is_pinned_and_user_is_not_root(name: str) -> None:
    steps = instructions(DOCKERFILES[name])
    for keyword, arguments in steps:
        if keyword == "FROM":
            image = arguments.split()[0]
            assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), image
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit(), "a numeric user lets runAsNonRoot verify it without a passwd lookup"
    assert int(user) != 0


def test_operator_image_copies_only_the_operator_distribution() -> None:
    sources = [
        arguments.split()[:-1]
        for keyword, arguments in instructions(DOCKERFILES["operator"])
        if keyword == "COPY" and "--from" not in arguments
    ]
    copied = {source for group in sources for source in group}
    assert copied == {
        "pyproject.toml",
        "README.md",
        "operator/tfjob_operator/",
        "images/operator/constraints.txt",
    }
    assert not any("localcluster" in source for source in copied)
    entrypoint = dict(instructions(DOCKERFILES["operator"]))["ENTRYPOINT"]
    assert json.loads(entrypoint) == ["tfjob-operator"]


@pytest.mark.parametrize("name", ["trainer-cpu", "trainer-gpu"])
def test_trainer_images_carry_tensorflow_2_21_and_the_example_scripts(name: str) -> None:
    steps = instructions(DOCKERFILES[name])
    installs = " ".join(arguments for keyword, arguments in steps if keyword == "RUN")
    tensorflow = (
        "tensorflow-cpu==2.21.0" if name == "trainer-cpu" else "tensorflow[and-cuda]==2.21.0"
    )
    assert tensorflow in installs
    assert "tf-keras==2.21.0" in installs
    assert "onnx==1.23.2" in installs
    assert "pip install --no-deps tf2onnx==1.16.1" in installs
    assert ("COPY", "images/trainer/ ./") in steps
    assert dict(steps)["WORKDIR"] == "/opt/trainer"
    assert "TF_USE_LEGACY_KERAS=1" in " ".join(a for k, a in steps if k == "ENV")


def _pip_install_command() -> list[str]:
    """The operator Dockerfile's install, as an argv with its paths left symbolic."""
    run = next(
        arguments
        for keyword, arguments in instructions(DOCKERFILES["operator"])
        if keyword == "RUN" and "pip install" in arguments
    )
    install = run.split("&&")[-1]
    return shlex.split(install)


@pytest.mark.timeout(300)
def test_operator_installs_and_starts_in_a_plain_virtualenv(tmp_path: Path) -> None:
    """Build what the Dockerfile builds, as it builds it: copy what it copies, install with the
    same pip command and constraints, then start the entry point."""
    source = tmp_path / "src"
    for keyword, arguments in instructions(DOCKERFILES["operator"]):
        if keyword != "COPY" or "--from" in arguments:
            continue
        *sources, _ = arguments.split()
        for item in sources:
            origin = REPOSITORY / item
            target = source / item
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    prefix = tmp_path / "venv"
    venv.create(prefix, with_pip=True)
    argv = _pip_install_command()
    assert argv[0] == "/opt/tfjob-operator/bin/pip"
    assert argv[1] == "install"
    replacements = {
        "/opt/tfjob-operator/bin/pip": str(prefix / "bin" / "pip"),
        "/tmp/constraints.txt": str(source / "images" / "operator" / "constraints.txt"),
        "/src": str(source),
    }
    command = [replacements.get(part, part) for part in argv]
    subprocess.run(
        [*command, "--quiet", "--no-cache-dir", "--disable-pip-version-check"],
        check=True,
        timeout=240,
        env=CLEAN_ENV,
    )
    python = str(prefix / "bin" / "python")

    help_text = subprocess.run(
        [str(prefix / "bin" / "tfjob-operator"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=CLEAN_ENV,
    ).stdout
    assert "run" in help_text
    assert "compile" in help_text
    run_help = subprocess.run(
        [str(prefix / "bin" / "tfjob-operator"), "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=CLEAN_ENV,
    ).stdout
    assert "--metrics-port" in run_help
    assert "--liveness" in run_help
    imported = subprocess.run(
        [
            python,
            "-c",
            "import tfjob_operator.shell.handlers as h, tfjob_operator.shell.metrics;"
            " print(h.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=CLEAN_ENV,
        cwd=tmp_path,
    ).stdout
    assert imported.startswith(str(prefix)), imported  # the installed copy, not the source tree
    missing = subprocess.run(
        [python, "-c", "import tfjob_localcluster"],
        capture_output=True,
        text=True,
        timeout=60,
        env=CLEAN_ENV,
        cwd=tmp_path,
    )
    assert missing.returncode != 0
    assert "ModuleNotFoundError" in missing.stderr

    # The constraints pin everything the install resolved: two builds install the same code.
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude", "tfjob-operator"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=CLEAN_ENV,
    ).stdout.split()
    constraints = (IMAGES / "operator" / "constraints.txt").read_text().split("\n")
    pinned = {line.strip() for line in constraints if line.strip() and not line.startswith("#")}
    assert set(frozen) <= pinned, f"not in constraints.txt: {sorted(set(frozen) - pinned)}"
