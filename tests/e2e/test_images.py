"""The project's images, built here from their Dockerfiles (tfjob-local images), run as their
Dockerfiles say: the operator compiles a job as uid 65532, the CPU trainer trains with
TensorFlow as uid 1000, and the Horovod image has a working Horovod and an sshd its non-root
user can start."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tfjob_localcluster import images

# A cold build of the three (base, pip, Horovod's compile) takes minutes; cached, seconds.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def built() -> dict[str, images.Built]:
    return {item.image.name: item for item in images.build_images(list(images.DEFAULT_IMAGES))}


@pytest.fixture(scope="module")
def buildah() -> images.Buildah:
    return images.Buildah(images.images_root())


def run_in(buildah: images.Buildah, image: str, *command: str, stdin: str = "") -> str:
    """``command`` in a throwaway container of ``image``, as the image's own USER."""
    container = buildah.run("from", "--pull-never", image, capture=True).strip()
    try:
        done = subprocess.run(
            buildah.argv("run", "--runtime", buildah.runtime, container, "--", *command),
            input=stdin,
            text=True,
            capture_output=True,
            timeout=600,
            check=False,
        )
    finally:
        subprocess.run(buildah.argv("rm", container), capture_output=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module", autouse=True)
def report(built: dict[str, images.Built]) -> None:
    print("\n" + images.report(list(built.values())))


SEED_JOB = """
apiVersion: tfjob.dev/v1alpha1
kind: TensorFlowJob
metadata: {name: seed-ps}
spec:
  entryScript: train.py
  distribution: {backend: parameterServer, workerCount: 2, parameterServerCount: 1}
"""


def test_the_operator_image_runs_the_operator_as_a_non_root_user(
    buildah: images.Buildah, built: dict[str, images.Built]
) -> None:
    tag = built["operator"].image.tags[0]
    assert run_in(buildah, tag, "id", "-u").strip() == "65532"
    compiled = yaml.safe_load(
        run_in(buildah, tag, "tfjob-operator", "compile", "-f", "-", stdin=SEED_JOB)
    )
    replicas = {kind: spec["replicas"] for kind, spec in compiled["spec"]["tfReplicaSpecs"].items()}
    assert replicas == {"Chief": 1, "Worker": 2, "PS": 1}


def test_the_cpu_trainer_image_trains_as_the_trainer_user(
    buildah: images.Buildah, built: dict[str, images.Built]
) -> None:
    tag = built["trainer-cpu"].image.tags[0]
    out = run_in(
        buildah,
        tag,
        "sh",
        "-c",
        "id -u && python train.py --epochs 1 --steps-per-epoch 2 --samples 64 2>&1",
    )
    assert out.splitlines()[0] == "1000"
    assert "loss" in out, out


def test_the_horovod_image_has_horovod_with_mpi_and_an_sshd_its_user_can_run(
    buildah: images.Buildah, built: dict[str, images.Built]
) -> None:
    tag = built["horovod"].image.tags[0]
    check = run_in(buildah, tag, "horovodrun", "--check-build")
    assert "[X] TensorFlow" in check, check
    assert "[X] MPI" in check, check
    assert "[X] Gloo" in check, check
    ranks = run_in(
        buildah,
        tag,
        "mpirun",
        "-np",
        "2",
        "--oversubscribe",
        "python",
        "-c",
        "import horovod.tensorflow as hvd; hvd.init(); print('rank', hvd.rank(), hvd.size())",
    )
    assert sorted(line for line in ranks.splitlines() if line.startswith("rank")) == [
        "rank 0 2",
        "rank 1 2",
    ]
    # sshd's configuration as the non-root user runs it (-t: check it, keys included).
    assert run_in(buildah, tag, "sh", "-c", "id -u && /usr/sbin/sshd -t && echo ok").split() == [
        "1000",
        "ok",
    ]


# Horovod's callbacks import the standalone `keras` (`from keras import backend as K`); with
# Keras 3 there, MetricAverageCallback failed: "module 'keras.backend' has no attribute
# 'constant'". In the image every Keras is tf_keras, the one training uses.
KERAS_CHECK = """\
import importlib.metadata, keras, keras.backend, tensorflow as tf, tf_keras
from horovod.tensorflow.keras import callbacks
import horovod.keras
print("keras", keras.__version__, keras is tf_keras, keras.backend is tf_keras.backend)
print("tf.keras", tf.keras.layers.Dense is tf_keras.layers.Dense)
print("horovod", callbacks.K is tf_keras.backend, float(callbacks.K.constant(2.5)))
print("spec", tf_keras.backend.__spec__.name)
try:
    importlib.metadata.version("keras")
except importlib.metadata.PackageNotFoundError:
    print("keras 3 absent")
"""


def test_the_horovod_images_only_keras_is_the_keras_training_and_horovod_use(
    buildah: images.Buildah, built: dict[str, images.Built]
) -> None:
    said = run_in(buildah, built["horovod"].image.tags[0], "python", "-c", KERAS_CHECK)
    lines = said.splitlines()
    assert "keras 2.18.0 True True" in lines, said
    assert "tf.keras True" in lines, said
    assert "horovod True 2.5" in lines, said
    assert "spec tf_keras.backend" in lines, said  # tf_keras' own modules, left as they were
    assert "keras 3 absent" in lines, said
