"""Building the images keeps the storage to the last build of each: what a change to an
image's sources replaced goes, and the layer cache of every image stays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tfjob_localcluster import images


@dataclass(frozen=True)
class _ScratchImage(images.Image):
    """A two-stage image from a Dockerfile and context of the test's own."""

    folder: Path = Path()

    @property
    def dockerfile(self) -> Path:
        return self.folder / "Dockerfile"

    @property
    def context(self) -> Path:
        return self.folder


TWO_STAGES = "FROM scratch AS build\nCOPY source /made\nFROM scratch\nCOPY --from=build /made /\n"


def _build(buildah: images.Buildah, name: str, folder: Path, source: str) -> images.Built:
    folder.mkdir(exist_ok=True)
    (folder / "Dockerfile").write_text(TWO_STAGES)
    (folder / "source").write_text(source)
    return images.build(buildah, _ScratchImage(name, (f"localhost/tfjob-test-{name}:1",), folder))


def _stored(buildah: images.Buildah) -> set[str]:
    listed = buildah.run("images", "--all", "--quiet", "--no-trunc", capture=True).split()
    return {image.removeprefix("sha256:")[: images.SHORT_ID] for image in listed}


@pytest.mark.timeout(300)
def test_a_rebuilt_images_old_build_goes_and_every_last_build_stays_cached(tmp_path: Path) -> None:
    """Each change to an image's sources used to leave its last build behind in the storage
    (the operator's venv: 2 x 210 MB a time). The replaced build goes; the last build of every
    image, build stage included, stays as the layer cache, so an unchanged image is not built
    again, whether it was built in this run or an earlier one."""
    buildah = images.Buildah(tmp_path / "storage")
    other = _build(buildah, "other", tmp_path / "other", "other")
    images.prune_replaced_builds(buildah, [other])
    first = _build(buildah, "changing", tmp_path / "changing", "one")
    second = _build(buildah, "changing", tmp_path / "changing", "two")
    assert first.image_id != second.image_id
    assert len(first.steps) >= 2, first.steps  # the build stage's image and the final one

    removed = images.prune_replaced_builds(buildah, [second])

    stored = _stored(buildah)
    assert removed == len(first.steps)
    assert not first.steps & stored
    assert second.steps | other.steps <= stored
    again = _build(buildah, "changing", tmp_path / "changing", "two")
    assert again.image_id == second.image_id  # taken from the cache, build stage and all
    assert _build(buildah, "other", tmp_path / "other", "other").image_id == other.image_id
