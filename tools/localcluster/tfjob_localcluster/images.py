"""The project's images, built on this machine from images/*/Dockerfile by buildah, with no
container registry.

The Dockerfiles start FROM Docker Hub's python:*-slim-bookworm, which no registry here serves.
So a base image is made locally first: Debian bookworm's minimal system with Debian's own
Python 3.11 (mmdebstrap, from the machine's Debian mirror), plus the machine's CA bundle and a
pip.conf naming it, so that pip and apt inside a build work behind this workplace's
TLS-inspecting egress. It is tagged with every name the Dockerfiles' FROM lines ask for (it
stands in for them: Debian's Python 3.11.2, not CPython 3.12.11, which the project's
`requires-python >= 3.11` allows). The Dockerfiles themselves are built unchanged
(`buildah bud --pull=never`), with buildah's layer cache: an image whose inputs did not change
is not built again, and a changed file rebuilds from the step that copies it.

Everything lives under ~/.cache/tfjob-operator/images (its own buildah storage), outside the
repository. `tfjob-local images` (or `make images`) builds and prints a table of sizes and
build times.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import host_packages
from .binaries import cache_root

REPOSITORY = Path(__file__).resolve().parents[3]
# What building needs on the machine: command -> Debian package.
BUILD_TOOLS = {"buildah": "buildah", "mmdebstrap": "mmdebstrap", "runc": "runc"}

SUITE = "bookworm"  # the Dockerfiles' *-slim-bookworm
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
# python3-venv: `python -m venv`; passwd: groupadd and useradd. `python` is linked in
# /usr/local/bin, where Docker Hub's python images have it: Debian's python-is-python3 would put
# it in /usr/bin, which Debian's mpirun puts first on a rank's PATH, ahead of the image's venv.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Bump when the way the base is made changes, so a base made the old way is not reused.
BASE_RECIPE = "2"


@dataclass(frozen=True)
class Image:
    name: str  # images/<name>/Dockerfile
    tags: tuple[str, ...]  # the first is the one reported; containerd resolves docker.io/library

    @property
    def dockerfile(self) -> Path:
        return REPOSITORY / "images" / self.name / "Dockerfile"

    @property
    def ignore_file(self) -> Path:
        return self.dockerfile.with_name("Dockerfile.dockerignore")

    @property
    def context(self) -> Path:
        return REPOSITORY


IMAGES = {
    image.name: image
    for image in (
        Image(
            "operator",
            (
                "docker.io/library/tfjob-operator:0.1.0",
                "ghcr.io/tfjob-dev/tfjob-operator:0.1.0",  # the chart's default repository
            ),
        ),
        Image("trainer-cpu", ("docker.io/library/tfjob-trainer-cpu:2.21.0",)),
        Image("horovod", ("docker.io/library/tfjob-horovod:0.28.1-tf2.18.1",)),
        # CUDA wheels of several GB, for nodes this machine does not have: built only by name.
        Image("trainer-gpu", ("docker.io/library/tfjob-trainer-gpu:2.21.0",)),
    )
}
DEFAULT_IMAGES = ("operator", "trainer-cpu", "horovod")

_FROM = re.compile(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE | re.MULTILINE)


def images_root() -> Path:
    return cache_root().parent / "images"


def base_names(dockerfiles: list[Path]) -> list[str]:
    """The images the Dockerfiles' FROM lines name (not their own earlier stages), as buildah
    resolves a Docker Hub short name."""
    names: list[str] = []
    for dockerfile in dockerfiles:
        stages: set[str] = set()
        for match in _FROM.finditer(dockerfile.read_text()):
            image, stage = match.group(1), match.group(2)
            if image not in stages:
                full = image if "/" in image else f"docker.io/library/{image}"
                if full not in names:
                    names.append(full)
            if stage:
                stages.add(stage)
    return names


@dataclass
class Buildah:
    """buildah with the project's own storage and Debian's runc (crun refuses this host's
    hybrid cgroups)."""

    root: Path

    def __post_init__(self) -> None:
        self.runtime = shutil.which("runc") or "/usr/sbin/runc"

    def argv(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "overlay",
            *args,
        ]

    def run(self, *args: str, capture: bool = False) -> str:
        done = subprocess.run(
            self.argv(*args),
            check=True,
            text=True,
            capture_output=capture,
            stdin=subprocess.DEVNULL,
        )
        return done.stdout if capture else ""

    def image(self, name: str) -> dict[str, object] | None:
        """An image in the storage by name: id, names, size; None when absent."""
        found = subprocess.run(
            self.argv("images", "--json", name), text=True, capture_output=True, check=False
        )
        if found.returncode != 0 or not found.stdout.strip():
            return None
        listed = json.loads(found.stdout)
        return listed[0] if listed else None


def _pip_conf() -> str:
    return f"[global]\ncert = {HOST_CA_BUNDLE}\n"


def base_key() -> str:
    """What the base image is made of; a new key makes a new base (and rebuilds every image)."""
    digest = hashlib.sha256()
    for part in (BASE_RECIPE, SUITE, *MIRRORS, *BASE_PACKAGES, _pip_conf()):
        digest.update(part.encode() + b"\0")
    digest.update(HOST_CA_BUNDLE.read_bytes())
    return digest.hexdigest()[:12]


def ensure_base(buildah: Buildah, names: list[str], log: list[str]) -> str:
    """The local base image under ``names``; made (about 90 s) only when its key is new."""
    key = base_key()
    own = f"localhost/tfjob-base:{key}"
    if buildah.image(own) is None:
        rootfs = buildah.root / f"base-{key}.tar"
        if not rootfs.exists():
            started = time.monotonic()
            partial = rootfs.with_suffix(".partial")
            subprocess.run(
                [
                    "mmdebstrap",
                    "--quiet",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    "--dpkgopt=path-exclude=/usr/share/doc/*",
                    "--dpkgopt=path-exclude=/usr/share/man/*",
                    "--dpkgopt=path-exclude=/usr/share/locale/*",
                    "--format=tar",
                    SUITE,
                    str(partial),
                    *MIRRORS,
                ],
                check=True,
                stdin=subprocess.DEVNULL,
            )
            partial.rename(rootfs)
            log.append(f"base rootfs (mmdebstrap): {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        container = buildah.run("from", "scratch", capture=True).strip()
        try:
            with tempfile.TemporaryDirectory() as scratch:
                pip_conf = Path(scratch) / "pip.conf"
                pip_conf.write_text(_pip_conf())
                buildah.run("add", container, str(rootfs), "/", capture=True)
                buildah.run(
                    "copy", container, str(HOST_CA_BUNDLE), str(HOST_CA_BUNDLE), capture=True
                )
                buildah.run("copy", container, str(pip_conf), "/etc/pip.conf", capture=True)
            buildah.run(
                "run",
                "--runtime",
                buildah.runtime,
                container,
                "--",
                "ln",
                "-s",
                "/usr/bin/python3",
                "/usr/local/bin/python",
            )
            buildah.run(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                "--label",
                f"dev.tfjob.base={key}",
                container,
            )
            buildah.run("commit", "--quiet", container, own, capture=True)
        finally:
            subprocess.run(buildah.argv("rm", container), capture_output=True, check=False)
        log.append(f"base image (import, CA layer): {time.monotonic() - started:.0f} s")
    for name in names:
        buildah.run("tag", own, name, capture=True)
    return own


def prune_older_bases(buildah: Buildah, key: str) -> int:
    """Remove the images made from an earlier base (every image and build layer inherits the
    base's label) and earlier base tarballs: each base change would otherwise leave the last
    full set behind (about 10 GB). Returns how many images went."""
    ids = buildah.run("images", "--all", "--quiet", "--no-trunc", capture=True).split()
    stale = []
    for image_id in dict.fromkeys(ids):
        label = buildah.run(
            "inspect",
            "--type",
            "image",
            "--format",
            '{{index .OCIv1.Config.Labels "dev.tfjob.base"}}',
            image_id,
            capture=True,
        ).strip()
        if label and label != key:
            stale.append(image_id)
    if stale:
        buildah.run("rmi", "--force", *stale, capture=True)
    for tarball in buildah.root.glob("base-*.tar"):
        if tarball.name != f"base-{key}.tar":
            tarball.unlink()
    return len(stale)


@dataclass
class Built:
    image: Image
    seconds: float
    size: str  # as buildah reports it, e.g. "383 MB"
    image_id: str
    steps: frozenset[str] = frozenset()  # short IDs of the images its steps made or reused


def build(buildah: Buildah, image: Image) -> Built:
    """One image from its Dockerfile, exactly as written, tagged with its names."""
    started = time.monotonic()
    args = [
        "bud",
        "--pull=never",
        "--layers",
        "--runtime",
        buildah.runtime,
        "--network",
        "host",
        "-f",
        str(image.dockerfile),
    ]
    if image.ignore_file.exists():
        args += ["--ignorefile", str(image.ignore_file)]
    for tag in image.tags:
        args += ["-t", tag]
    steps = _build_steps(buildah.argv(*args, str(image.context)))
    seconds = time.monotonic() - started
    found = buildah.image(image.tags[0])
    assert found is not None, f"{image.tags[0]} is missing after its build"
    image_id = str(found.get("id", ""))
    steps |= {image_id[:SHORT_ID]}
    return Built(image, seconds, str(found.get("size", "?")), image_id[:12], steps)


# buildah bud's line after each step: "--> <id>" (shortened), or "--> Using cache <id>".
_STEP = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})\s*$")
SHORT_ID = 11  # as buildah bud prints an image ID; how build steps are recorded


def _build_steps(argv: list[str]) -> frozenset[str]:
    """Run a build, passing its output on, and return the (short) IDs of the images its steps
    made or took from the cache, build stages included."""
    steps: set[str] = set()
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as build:
        assert build.stdout is not None
        for line in build.stdout:
            sys.stdout.write(line)
            if match := _STEP.match(line):
                steps.add(match.group(1)[:SHORT_ID])
    if build.returncode != 0:
        raise subprocess.CalledProcessError(build.returncode, argv)
    return frozenset(steps)


def _steps_file(buildah: Buildah) -> Path:
    return buildah.root / "build-steps.json"


def prune_replaced_builds(buildah: Buildah, built: list[Built]) -> int:
    """Remove the images that earlier builds left without a name: each change to an image's
    sources leaves its last build behind (the operator's venv alone is 2 x 210 MB a time).
    Kept: every step of the last build of each image (this run's, and those recorded by earlier
    runs for images not built now), which is the layer cache; an image last built before this
    record existed loses its build stages' cache once. Returns how many images went."""
    record = _steps_file(buildah)
    kept: dict[str, list[str]] = json.loads(record.read_text()) if record.exists() else {}
    kept.update({item.image.name: sorted(item.steps) for item in built})
    record.write_text(json.dumps(kept, indent=1))
    prefixes = {step for steps in kept.values() for step in steps}
    removed = 0
    while True:  # a removed image's parent may be left without children, and go next
        dangling = buildah.run(
            "images", "--quiet", "--no-trunc", "--filter", "dangling=true", capture=True
        ).split()
        stale = [
            i
            for i in dict.fromkeys(dangling)
            if i.removeprefix("sha256:")[:SHORT_ID] not in prefixes
        ]
        if not stale:
            return removed
        gone = subprocess.run(buildah.argv("rmi", *stale), capture_output=True, text=True)
        if gone.returncode != 0:  # in use, say: a full disk later is better than a failed build
            print(f"could not remove replaced builds: {gone.stderr.strip()}", file=sys.stderr)
            return removed
        removed += len(stale)


def build_images(names: list[str]) -> list[Built]:
    host_packages.ensure(BUILD_TOOLS, "building the images")
    chosen = [IMAGES[name] for name in names]
    buildah = Buildah(images_root())
    buildah.root.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    ensure_base(buildah, base_names([image.dockerfile for image in chosen]), log)
    for line in log:
        print(line, file=sys.stderr)
    pruned = prune_older_bases(buildah, base_key())
    if pruned:
        print(f"removed {pruned} images of an earlier base", file=sys.stderr)
    built = []
    for image in chosen:
        print(
            f"building {image.tags[0]} from {image.dockerfile.relative_to(REPOSITORY)}",
            file=sys.stderr,
        )
        built.append(build(buildah, image))
    pruned = prune_replaced_builds(buildah, built)
    if pruned:
        print(f"removed {pruned} images of replaced builds", file=sys.stderr)
    return built


def report(built: list[Built]) -> str:
    lines = [f"{'image':<48} {'size':>9} {'build':>8}  id"]
    for item in built:
        lines.append(
            f"{item.image.tags[0]:<48} {item.size:>9} {item.seconds:>6.1f} s  {item.image_id}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images",
        nargs="*",
        help=f"of {', '.join(IMAGES)} (default: {' '.join(DEFAULT_IMAGES)})",
    )


def main(args: argparse.Namespace) -> int:
    unknown = [name for name in args.images if name not in IMAGES]
    if unknown:
        print(f"tfjob-local images: no image {unknown}; there are {list(IMAGES)}", file=sys.stderr)
        return 2
    try:
        built = build_images(list(args.images) or list(DEFAULT_IMAGES))
    except host_packages.MissingPackages as error:
        print(f"tfjob-local images: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"tfjob-local images: {' '.join(map(str, error.cmd))} failed", file=sys.stderr)
        return 1
    print(report(built))
    return 0
