"""A job's code shipped with it: packing a directory (checked before anything is created), the
pods that unpack or mount it, and a job that waits for its source. No cluster."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.factories import UID, job, run
from tfjob_operator.api.v1alpha1 import TensorFlowJobSpec
from tfjob_operator.client.pack import (
    MAX_ARCHIVE_BYTES,
    SourceError,
    pack_directory,
    source_config_map,
)
from tfjob_operator.client.submit import with_source_directory
from tfjob_operator.core.estimator import compile_replica_specs
from tfjob_operator.core.source import ARCHIVE_KEY, UNPACK
from tfjob_operator.settings import OperatorSettings

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my-tf-proj"
    (root / "utils").mkdir(parents=True)
    (root / "train.py").write_text("import utils.data\n")
    (root / "utils" / "data.py").write_text("ROWS = 3\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_a_directory_packs_its_files_without_caches_or_version_control(project: Path) -> None:
    archive = pack_directory(project, "train.py")
    assert members(archive) == {"train.py": b"import utils.data\n", "utils/data.py": b"ROWS = 3\n"}
    # The same tree packs the same, whatever the files' times.
    os.utime(project / "train.py", (1, 1))
    assert pack_directory(project, "train.py") == archive


def test_an_entry_script_not_in_the_directory_is_refused(project: Path) -> None:
    with pytest.raises(SourceError, match=r"entry script train2\.py is not in source directory"):
        pack_directory(project, "train2.py")
    assert pack_directory(project, "utils/data.py")


def test_a_directory_too_large_for_a_config_map_is_refused_saying_what_to_use(
    project: Path,
) -> None:
    (project / "data.bin").write_bytes(os.urandom(MAX_ARCHIVE_BYTES + 1))
    with pytest.raises(SourceError) as refused:
        pack_directory(project, "train.py")
    message = str(refused.value)
    assert "more than the 1,000,000 a ConfigMap holds" in message
    assert "spec.source.persistentVolumeClaim" in message


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        pack_directory(tmp_path / "nowhere", "train.py")


def test_the_source_config_map_is_owned_by_and_labelled_with_the_job() -> None:
    body = source_config_map(
        "mnist", "ml", UID, b"tgz", api_version="tfjob.dev/v1alpha1", kind="TensorFlowJob"
    )
    assert body["metadata"]["name"] == "mnist-source"
    assert body["metadata"]["labels"] == {"tfjob.dev/job-name": "mnist"}
    (owner,) = body["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"], owner["kind"]) == (UID, True, "TensorFlowJob")
    assert body["binaryData"] == {ARCHIVE_KEY: "dGd6"}


def estimator(**spec: object) -> dict:
    return {"entryScript": "train.py", **spec}


def pods_of(spec: dict) -> dict:
    replicas = compile_replica_specs(TensorFlowJobSpec.model_validate(spec), OperatorSettings())
    return {
        kind.value: replica.template.model_dump(by_alias=True, exclude_none=True)["spec"]
        for kind, replica in replicas.items()
    }


def test_a_shipped_directory_is_unpacked_by_the_trainers_image_into_the_working_dir() -> None:
    spec = estimator(
        image="trainer:1",
        source={"directory": {"configMap": "mnist-source"}},
        distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
        template={"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}},
    )
    worker = pods_of(spec)["Worker"]
    (unpack,) = worker["initContainers"]
    assert unpack["image"] == "trainer:1"
    assert unpack["command"][:2] == ["python", "-c"]
    assert unpack["command"][2] == UNPACK
    (trainer,) = worker["containers"]
    assert trainer["workingDir"] == "/workspace"
    assert {"name": "tfjob-source", "mountPath": "/workspace"} in trainer["volumeMounts"]
    assert {v["name"] for v in worker["volumes"]} == {
        "data",
        "tfjob-source",
        "tfjob-source-archive",
    }
    archive = next(v for v in worker["volumes"] if v["name"] == "tfjob-source-archive")
    assert archive["configMap"] == {"name": "mnist-source"}


def _unpack(archive: bytes, tmp_path: Path, *, filters: bool) -> subprocess.CompletedProcess:
    """UNPACK as the init container runs it, here; ``filters=False``: as on a Python without
    tar extraction filters."""
    (tmp_path / "source.tar.gz").write_bytes(archive)
    (tmp_path / "workspace").mkdir(exist_ok=True)
    code = UNPACK.replace("/etc/tfjob/source", str(tmp_path)).replace(
        "/workspace", str(tmp_path / "workspace")
    )
    if not filters:
        code = "import tarfile\ndel tarfile.data_filter\n" + code
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=15, check=False
    )


@pytest.mark.parametrize("filters", [True, False])
def test_the_unpacking_works_with_and_without_extraction_filters(
    tmp_path: Path, filters: bool
) -> None:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "train.py").write_text("print('hi')\n")
    (project / "pkg" / "model.py").write_text("X = 1\n")
    result = _unpack(pack_directory(project, "train.py"), tmp_path, filters=filters)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "workspace" / "pkg" / "model.py").read_text() == "X = 1\n"
    assert (tmp_path / "workspace" / "train.py").is_file()


@pytest.mark.parametrize("filters", [True, False])
def test_an_archive_that_reaches_outside_is_refused_either_way(
    tmp_path: Path, filters: bool
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
        data = b"owned\n"
        member = tarfile.TarInfo("../outside.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    result = _unpack(buffer.getvalue(), tmp_path, filters=filters)
    assert result.returncode != 0
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "workspace" / "escape").is_symlink()


def test_an_mpi_job_ships_its_source_to_the_launcher_and_every_worker() -> None:
    spec = estimator(
        source={"directory": {"configMap": "hvd-source"}},
        distribution={"backend": "mpi", "nodeCount": 2},
    )
    for kind, pod in pods_of(spec).items():
        assert pod["containers"][0]["workingDir"] == "/workspace", kind
        assert pod["initContainers"][0]["name"] == "tfjob-source", kind


def test_code_on_a_volume_is_mounted_read_only_as_the_working_dir() -> None:
    spec = estimator(source={"persistentVolumeClaim": {"claimName": "code", "subPath": "proj"}})
    worker = pods_of(spec)["Worker"]
    assert "initContainers" not in worker
    assert worker["volumes"] == [
        {"name": "tfjob-source", "persistentVolumeClaim": {"claimName": "code", "readOnly": True}}
    ]
    assert worker["containers"][0]["volumeMounts"] == [
        {"name": "tfjob-source", "mountPath": "/workspace", "readOnly": True, "subPath": "proj"}
    ]


def test_a_job_waits_for_its_source_before_creating_pods() -> None:
    body = job(estimator(source={"directory": {"configMap": "mnist-source"}}))
    waiting = run(body, objects=())
    assert [o["kind"] for o in waiting.create] == []
    (entry,) = waiting.status["waiting"]
    assert (entry["pod"], entry["reason"]) == ("mnist-source", "WaitingForSource")
    arrived = run(body, objects=(("ConfigMap", "mnist-source", UID),))
    assert [o["metadata"]["name"] for o in arrived.create] == ["mnist-worker-0"]
    foreign = run(body, objects=(("ConfigMap", "mnist-source", "other"),))
    assert foreign.create == []
    assert foreign.status["waiting"][0]["reason"] == "NameInUse"


def test_the_client_names_the_source_config_map_and_refuses_the_kubeflow_form(
    project: Path,
) -> None:
    manifest = {"metadata": {"name": "mnist"}, "spec": estimator()}
    shipped, archive = with_source_directory(manifest, project)
    assert shipped["spec"]["source"] == {"directory": {"configMap": "mnist-source"}}
    assert "source" not in manifest["spec"]
    assert "train.py" in members(archive)
    kubeflow = {"metadata": {"name": "k"}, "spec": {"tfReplicaSpecs": {}}}
    with pytest.raises(ValueError, match="estimator-style job"):
        with_source_directory(kubeflow, project)
