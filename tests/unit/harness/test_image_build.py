"""What the image build derives from the Dockerfiles and the machine (the build itself runs in
tests/e2e, with buildah)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfjob_localcluster import host_packages, images

pytestmark = pytest.mark.timeout(30)


def test_the_base_stands_in_for_every_image_the_dockerfiles_start_from(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11.14-slim-bookworm AS build\nRUN true\n"
        "FROM build AS test\n"
        "from example.org/team/base:1 as final\n"
        "FROM python:3.11.14-slim-bookworm\n"
    )
    assert images.base_names([dockerfile]) == [
        "docker.io/library/python:3.11.14-slim-bookworm",
        "example.org/team/base:1",
    ]
    real = images.base_names([image.dockerfile for image in images.IMAGES.values()])
    assert real == [
        "docker.io/library/python:3.12.11-slim-bookworm",
        "docker.io/library/python:3.11.14-slim-bookworm",
    ]


def test_every_image_is_tagged_as_the_operator_and_chart_name_it() -> None:
    """A pod's `image: tfjob-horovod:...` resolves to docker.io/library/... in containerd."""
    from tfjob_operator.settings import OperatorSettings

    tags = {tag for image in images.IMAGES.values() for tag in image.tags}
    assert f"docker.io/library/{OperatorSettings().default_horovod_image}" in tags
    assert "ghcr.io/tfjob-dev/tfjob-operator:0.1.0" in tags


def test_missing_packages_are_named_and_present_commands_are_not(tmp_path: Path) -> None:
    present = tmp_path / "tool"
    present.write_text("")
    assert host_packages.missing({"sh": "dash", str(present): "tool-pkg"}) == []
    assert host_packages.missing(
        {"no-such-command-here": "some-package", "/no/such/path": "some-package"}
    ) == ["some-package"]


def test_without_root_a_missing_package_stops_at_once_naming_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(host_packages.os, "geteuid", lambda: 1000)
    with pytest.raises(host_packages.MissingPackages) as refused:
        host_packages.ensure({"no-such-command-here": "buildah"}, "building the images")
    assert "apt-get install --no-install-recommends buildah" in str(refused.value)
    assert "building the images" in str(refused.value)
