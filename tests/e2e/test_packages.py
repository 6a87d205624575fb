"""pipPackages installed for real: a package index runs as a pod of the local cluster (its pods
have no route out), behind basic auth whose credentials sit in a Secret; a job submitted through
the SDK installs a package from it in each pod before its script imports it."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.parse
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.support.constants import ON_REAL_NODE
from tests.support.index_pod import (
    CREDENTIALS,
    PASSWORD,
    USERNAME,
    credentials_secret,
    serve_in_cluster,
)
from tests.support.jobs import get_job

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator")]

# Every form the password could take on its way: raw, URL-quoted, in a Basic header.
PASSWORD_FORMS = (
    PASSWORD,
    urllib.parse.quote(PASSWORD, safe=""),
    base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),
)
SCRIPT = """\
import numpy
import tensorflow as tf
import tfjob_demo_greeting

print(tfjob_demo_greeting.greet("trainer"), flush=True)
print(f"tensorflow {tf.__version__} from the image, numpy {numpy.__version__}", flush=True)
"""


@pytest.fixture
def package_index(core: k8s.CoreV1Api, namespace: str, trainer_image: str) -> str:
    """The in-cluster index (tests/support/index_pod.py) in the test's namespace, with the
    basic-auth Secret for it there: its URL."""
    credentials_secret(core, namespace)
    return serve_in_cluster(core, namespace, trainer_image)


def index_requests(core: k8s.CoreV1Api, namespace: str) -> list[str]:
    return [
        line
        for line in core.read_namespaced_pod_log("pypi", namespace).splitlines()
        if line.startswith("GET ")
    ]


HOROVOD_SCRIPT = """\
import horovod.tensorflow as hvd
import tfjob_demo_greeting

hvd.init()
print(f"rank {hvd.rank()} of {hvd.size()}:", tfjob_demo_greeting.greet("rank"), flush=True)
"""


def project(tmp_path: Path, script: str = SCRIPT) -> Path:
    folder = tmp_path / "my-tf-proj"
    folder.mkdir()
    (folder / "train.py").write_text(script)
    return folder


def submit(
    api_client: k8s.ApiClient,
    namespace: str,
    folder: Path,
    index: str,
    credentials: str = CREDENTIALS,
    packages: tuple[str, ...] = ("tfjob-demo-greeting==1.0.0",),
    **estimator: object,
):  # -> tfjob_operator.client.sdk.Run
    """The SDK's submit of ``folder``'s train.py, installing ``packages`` from ``index``."""
    from tfjob_operator.client.sdk import Experiment, TensorFlow

    return Experiment("packages", namespace=namespace, api=api_client).submit(
        TensorFlow(
            source_directory=str(folder),
            entry_script="train.py",
            pip_packages=list(packages),
            pip_index_url=index,
            pip_index_secret=credentials,
            pod_template={"spec": ON_REAL_NODE},
            **estimator,
        )
    )


def test_a_job_installs_its_package_from_an_index_inside_the_cluster(
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    package_index: str,
    tmp_path: Path,
) -> None:
    run = submit(api_client, namespace, project(tmp_path), package_index)
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=240, out=out) == "Succeeded"
    shown = out.getvalue()
    greeting = re.search(r"hello trainer from the team index, beside numpy (\S+)", shown)
    assert greeting, shown[-2000:]
    # The package sees the image's numpy: the one the script has, which pip did not fetch.
    assert f"from the image, numpy {greeting.group(1)}" in shown, shown[-2000:]

    pod = f"{run.name}-worker-0"
    install = core.read_namespaced_pod_log(pod, namespace, container="tfjob-packages")
    assert f"tfjob: pip install tfjob-demo-greeting==1.0.0 from {package_index}" in install
    assert "Successfully installed tfjob-demo-greeting-1.0.0" in install, install
    assert PASSWORD not in install
    assert PASSWORD.replace("/", "%2F") not in install
    requests = index_requests(core, namespace)
    assert "GET /simple/tfjob-demo-greeting/ 200" in requests, requests
    assert not [r for r in requests if "numpy" in r or "tensorflow" in r], requests


SPY_SCRIPT = """\
import tfjob_spy_build

# What every process of the pod showed on its command line while the packages were built.
for line in tfjob_spy_build.SEEN:
    print("seen:", line, flush=True)
"""


def everything_said(
    core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, job: str, operator: object
) -> dict[str, str]:
    """Where a credential could show: each pod of the job (its spec, so every container's
    argv, and its status, so every termination message), each container's log, the job, the
    namespace's Events, and the operator's log."""
    found: dict[str, str] = {}
    pods = core.list_namespaced_pod(namespace, label_selector=f"tfjob.dev/job-name={job}").items
    assert pods
    for pod in pods:
        name = pod.metadata.name
        found[f"pod {name}"] = json.dumps(api_client.sanitize_for_serialization(pod))
        containers = [*(pod.spec.init_containers or []), *pod.spec.containers]
        for container in containers:
            try:
                found[f"log {name}/{container.name}"] = core.read_namespaced_pod_log(
                    name, namespace, container=container.name
                )
            except ApiException as never_ran:  # after a failed init container: no log at all
                if never_ran.status != 400:
                    raise
    found["job"] = json.dumps(get_job(api_client, namespace, job))
    events = core.list_namespaced_event(namespace).items
    found["events"] = json.dumps([api_client.sanitize_for_serialization(e) for e in events])
    found["operator"] = operator.log()  # type: ignore[attr-defined]
    return found


def test_the_credentials_never_leave_their_place_even_through_a_build_step(
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    package_index: str,
    operator: object,
    tmp_path: Path,
) -> None:
    """A package that pip must build, whose build needs another it builds with a pip of its
    own: the credentials reach pip alone, in a file for the index's host, and appear in no
    argv, log, termination message, status, Event or operator log, in any form."""
    run = submit(
        api_client,
        namespace,
        project(tmp_path, SPY_SCRIPT),
        package_index,
        packages=("tfjob-spy-build==1.0.0",),
    )
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=240, out=out) == "Succeeded"
    said = everything_said(core, api_client, namespace, run.name, operator)
    trainer = said[f"log {run.name}-worker-0/tensorflow"]
    # The spy did see the pip that installed the build requirement, the index on its line.
    runner = re.search(r"__pip-runner__\.py install .* -i (\S+) .*tfjob-spy-helper", trainer)
    assert runner, trainer[-3000:]
    assert runner.group(1) == package_index
    for where, text in said.items():
        for form in PASSWORD_FORMS:
            assert form not in text, f"the password ({form!r}) shows in {where}"


def test_wrong_credentials_fail_the_job_with_pips_words_and_the_indexs_refusal(
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    package_index: str,
    operator: object,
    tmp_path: Path,
) -> None:
    from tfjob_operator.client.sdk import RunFailed

    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "stale-creds"},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": USERNAME, "password": "last-year"},
        },
    )
    run = submit(api_client, namespace, project(tmp_path), package_index, "stale-creds")
    with pytest.raises(RunFailed) as failed:
        run.wait_for_completion(timeout=240, out=io.StringIO())
    # ExitCode policy: pip's exit 1 is the job's own error, not retried.
    message = failed.value.message
    assert f"Worker 0 (pod {run.name}-worker-0) exited with code 1 (Error)" in message, message
    assert "init container tfjob-packages: pip install failed" in message, message
    assert "No matching distribution found for tfjob-demo-greeting==1.0.0" in message, message
    assert f"the index {package_index} refused the credentials (HTTP 401)" in message, message
    for where, text in everything_said(core, api_client, namespace, run.name, operator).items():
        assert "last-year" not in text, f"the password shows in {where}"
    job = get_job(api_client, namespace, run.name)
    assert job["status"]["replicaStatuses"]["Worker"].get("restarts", 0) == 0
    assert "GET /simple/tfjob-demo-greeting/ 401" in index_requests(core, namespace)


def test_horovod_ranks_import_the_package_their_workers_installed(
    horovod_image: str,
    core: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    namespace: str,
    package_index: str,
    tmp_path: Path,
) -> None:
    """mpirun starts the ranks over SSH on the workers: each worker installs the packages, and
    the ranks run the layer's Python."""
    folder = project(tmp_path, HOROVOD_SCRIPT)
    run = submit(
        api_client, namespace, folder, package_index, node_count=2, distributed_backend="mpi"
    )
    out = io.StringIO()
    assert run.wait_for_completion(show_output=True, timeout=240, out=out) == "Succeeded"
    shown = out.getvalue()
    ranks = re.findall(r"rank (\d) of 2: hello rank from the team index", shown)
    assert sorted(ranks) == ["0", "1"], shown[-3000:]
    # Each worker pod fetched the package (they are gone: the job's cleanPodPolicy is Running).
    fetched = [r for r in index_requests(core, namespace) if r.startswith("GET /files/")]
    assert len(fetched) == 2, fetched
    launcher = core.read_namespaced_pod(f"{run.name}-launcher-0", namespace)
    assert not launcher.spec.init_containers or all(
        c.name != "tfjob-packages" for c in launcher.spec.init_containers
    )
