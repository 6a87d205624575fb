"""pipPackages: an init container installs them into a layer over the image's Python."""

from __future__ import annotations

import base64
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.support.package_index import build_sdist, build_wheel, serve
from tfjob_operator.api.v1alpha1 import TensorFlowJobSpec
from tfjob_operator.core.estimator import compile_replica_specs
from tfjob_operator.core.packages import (
    INSTALL,
    PACKAGES_CONTAINER,
    PACKAGES_MOUNT,
    PACKAGES_PYTHON,
)
from tfjob_operator.core.source import UNPACK_CONTAINER
from tfjob_operator.settings import OperatorSettings

pytestmark = pytest.mark.timeout(10)

SETTINGS = OperatorSettings()


def pod_specs(settings: OperatorSettings = SETTINGS, **fields: Any) -> dict[str, dict[str, Any]]:
    spec = TensorFlowJobSpec.model_validate({"entryScript": "train.py", **fields})
    replicas = compile_replica_specs(spec, settings).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    return {kind: replica["template"]["spec"] for kind, replica in replicas.items()}


def init_named(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod.get("initContainers", []) if c["name"] == name)


def test_packages_install_in_an_init_container_of_the_trainer_image_before_the_script() -> None:
    pod = pod_specs(pipPackages=["pandas==2.3.3", "numpy>=2"], scriptParams={"--epochs": 2})[
        "Worker"
    ]
    trainer = pod["containers"][0]
    install = init_named(pod, PACKAGES_CONTAINER)
    assert install["image"] == trainer["image"]
    assert install["command"] == [
        "python",
        "-c",
        INSTALL,
        PACKAGES_MOUNT,
        "/dev/termination-log",
        "pandas==2.3.3",
        "numpy>=2",
    ]
    assert trainer["command"] == [PACKAGES_PYTHON, "train.py", "--epochs", "2"]
    layer = {"name": "tfjob-packages", "mountPath": PACKAGES_MOUNT}
    assert layer in install["volumeMounts"]
    assert layer in trainer["volumeMounts"]
    assert {"name": "tfjob-packages", "emptyDir": {}} in pod["volumes"]
    assert install["env"] == []  # PyPI: no index, no credentials


GREETING = """\
import numpy

def greet(name):
    return f"hello {name}, from a package beside numpy {numpy.__version__}"
"""


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A package index on loopback holding one wheel that needs numpy (which this environment
    has): its URL, and the requests it received."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "tfjob-demo-greeting", "1.0.0", GREETING, ["numpy>=1.20"])
    # A package pip must build, whose build needs another it must build too: pip installs that
    # one with a pip of its own, and records what every process showed meanwhile.
    build_sdist(wheels, "tfjob-spy-helper", "1.0.0", "", [])
    build_sdist(wheels, "tfjob-spy-build", "1.0.0", "", ["tfjob-spy-helper==1.0.0"])
    monkeypatch.setenv("INDEX_USERNAME", "trainer")
    monkeypatch.setenv("INDEX_PASSWORD", "s3cret/with:odd@chars")
    server = serve(wheels, 0, host="127.0.0.1")
    requests: list[str] = []
    handler = server.RequestHandlerClass

    class Recording(handler):  # type: ignore[valid-type,misc]
        def _serve(self) -> int:
            status = super()._serve()
            requests.append(f"{self.path} {status}")
            return status

    server.RequestHandlerClass = Recording
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple", requests
    server.shutdown()


def run_install(layer: Path, packages: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """The init container's script, run by this environment's Python with its layer in
    ``layer`` and its termination log beside it, instead of the pod's."""
    log = layer.parent / "termination-log"
    log.write_text("")
    return subprocess.run(
        [sys.executable, "-c", INSTALL, str(layer), str(log), *packages],
        env={**os.environ, "PIP_NO_INDEX": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
def test_install_layers_packages_over_the_image_without_fetching_what_it_has(
    tmp_path: Path, index: tuple[str, list[str]]
) -> None:
    url, requests = index
    layer = tmp_path / "layer"
    done = run_install(
        layer,
        ["tfjob-demo-greeting==1.0.0"],
        TFJOB_PIP_INDEX_URL=url,
        TFJOB_PIP_USERNAME="trainer",
        TFJOB_PIP_PASSWORD="s3cret/with:odd@chars",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"tfjob: pip install tfjob-demo-greeting==1.0.0 from {url}" in done.stdout
    assert "Successfully installed tfjob-demo-greeting-1.0.0" in done.stdout
    assert "s3cret" not in done.stdout + done.stderr
    # numpy was already there: pip never asked the index for it.
    assert all("numpy" not in request for request in requests), requests
    assert any(r.startswith("/simple/tfjob-demo-greeting/ 200") for r in requests), requests
    greeting = subprocess.run(
        [
            str(layer / "bin" / "python"),
            "-c",
            "import tfjob_demo_greeting as g; print(g.greet('x'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    import numpy

    assert greeting == f"hello x, from a package beside numpy {numpy.__version__}\n"
    # The image's own environment did not get the package.
    assert importlib.util.find_spec("tfjob_demo_greeting") is None


PASSWORD = "s3cret/with:odd@chars"
# Every form the password could take on its way: raw, URL-quoted, and in a Basic header.
PASSWORD_FORMS = (
    PASSWORD,
    urllib.parse.quote(PASSWORD, safe=""),
    base64.b64encode(f"trainer:{PASSWORD}".encode()).decode(),
)


@pytest.mark.timeout(180)
def test_a_package_with_a_build_step_never_puts_the_credentials_on_a_command_line(
    tmp_path: Path, index: tuple[str, list[str]]
) -> None:
    """pip installs a package's build requirements with a pip it runs, passing it the index
    URL as an argument: a URL with the credentials in it was readable, while that ran, by every
    process of the pod (/proc/*/cmdline). They go in a netrc file for the index's host."""
    url, requests = index
    layer = tmp_path / "layer"
    done = run_install(
        layer,
        ["tfjob-spy-build==1.0.0"],
        TFJOB_PIP_INDEX_URL=url,
        TFJOB_PIP_USERNAME="trainer",
        TFJOB_PIP_PASSWORD=PASSWORD,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(r.startswith("/simple/tfjob-spy-helper/ 200") for r in requests), requests
    seen = subprocess.run(
        [str(layer / "bin" / "python"), "-c", "import tfjob_spy_build as s; print(s.SEEN)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    # The spy saw the pip that installed the build requirement, the index on its line.
    runner = re.search(r"__pip-runner__\.py install .* -i (\S+) .*tfjob-spy-helper", seen)
    assert runner, seen[:3000]
    assert runner.group(1) == url
    for form in PASSWORD_FORMS:
        assert form not in seen
        assert form not in done.stdout + done.stderr
    assert not (layer / ".tfjob-netrc").exists()  # gone before the trainer mounts the layer


@pytest.mark.timeout(60)
def test_the_credentials_probe_follows_no_redirect(tmp_path: Path) -> None:
    """After a failed install the index is asked whether it refuses the credentials. An index
    that redirects (to a CDN, to plain http) must not get them sent on."""
    received: list[str | None] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            received.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    target = f"http://localhost:{elsewhere.server_address[1]}/simple/"

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

    index = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (elsewhere, index):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = run_install(
            tmp_path / "layer",
            ["tfjob-demo-greeting"],
            TFJOB_PIP_INDEX_URL=f"http://127.0.0.1:{index.server_address[1]}/simple",
            TFJOB_PIP_USERNAME="trainer",
            TFJOB_PIP_PASSWORD=PASSWORD,
        )
    finally:
        index.shutdown()
        elsewhere.shutdown()
    assert done.returncode == 1
    assert all(header is None for header in received), received


@pytest.mark.timeout(180)
def test_install_with_wrong_credentials_fails_with_pips_words_and_no_password(
    tmp_path: Path, index: tuple[str, list[str]]
) -> None:
    url, requests = index
    done = run_install(
        tmp_path / "layer",
        ["tfjob-demo-greeting"],
        TFJOB_PIP_INDEX_URL=url,
        TFJOB_PIP_USERNAME="trainer",
        TFJOB_PIP_PASSWORD="wrong-guess",
    )
    assert done.returncode == 1
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith("pip install failed:\n")
    assert "No matching distribution found for tfjob-demo-greeting" in message, message
    assert message.endswith(f"the index {url} refused the credentials (HTTP 401)")
    assert "wrong-guess" not in done.stdout + done.stderr
    assert any(" 401" in r for r in requests), requests


def test_job_index_and_credentials_come_from_the_spec_and_a_secret() -> None:
    pod = pod_specs(
        pipPackages=["team-utils"],
        packageIndex={"url": "http://pypi.ml.svc:8080/simple", "credentialsSecret": "pypi-creds"},
        environmentVariables={"HTTPS_PROXY": "http://proxy:3128"},
    )["Worker"]
    env = init_named(pod, PACKAGES_CONTAINER)["env"]
    assert env == [
        {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
        {"name": "TFJOB_PIP_INDEX_URL", "value": "http://pypi.ml.svc:8080/simple"},
        {
            "name": "TFJOB_PIP_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": "pypi-creds", "key": "username"}},
        },
        {
            "name": "TFJOB_PIP_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "pypi-creds", "key": "password"}},
        },
    ]
    # The trainer sees neither the index nor the credentials.
    names = {v["name"] for v in pod["containers"][0].get("env", [])}
    assert names == {"HTTPS_PROXY"}


def test_operator_default_index_applies_unless_the_job_names_one() -> None:
    settings = OperatorSettings(
        package_index_url="https://pypi.corp/simple", package_index_secret="corp-pypi"
    )
    env = init_named(pod_specs(settings, pipPackages=["x"])["Worker"], PACKAGES_CONTAINER)["env"]
    assert env[0] == {"name": "TFJOB_PIP_INDEX_URL", "value": "https://pypi.corp/simple"}
    assert env[1]["valueFrom"]["secretKeyRef"]["name"] == "corp-pypi"
    own = pod_specs(settings, pipPackages=["x"], packageIndex={"url": "https://own/simple"})
    env = init_named(own["Worker"], PACKAGES_CONTAINER)["env"]
    assert env == [{"name": "TFJOB_PIP_INDEX_URL", "value": "https://own/simple"}]


def test_shipped_source_is_unpacked_first_and_packages_install_from_it() -> None:
    pod = pod_specs(pipPackages=["./lib"], source={"directory": {"configMap": "job-source"}})[
        "Worker"
    ]
    names = [c["name"] for c in pod["initContainers"]]
    assert names == [UNPACK_CONTAINER, PACKAGES_CONTAINER]
    install = init_named(pod, PACKAGES_CONTAINER)
    assert install["workingDir"] == "/workspace"
    assert {"name": "tfjob-source", "mountPath": "/workspace"} in install["volumeMounts"]


def test_every_replica_of_a_parameter_server_job_installs_them() -> None:
    pods = pod_specs(
        pipPackages=["pandas"],
        distribution={"backend": "parameterServer", "workerCount": 2},
    )
    assert set(pods) == {"Chief", "Worker", "PS"}
    for pod in pods.values():
        assert init_named(pod, PACKAGES_CONTAINER)
        assert pod["containers"][0]["command"][0] == PACKAGES_PYTHON


def test_horovod_ranks_run_the_layer_on_the_workers_and_the_launcher_installs_nothing() -> None:
    pods = pod_specs(pipPackages=["pandas"], distribution={"backend": "mpi", "nodeCount": 2})
    launcher, worker = pods["Launcher"], pods["Worker"]
    assert "initContainers" not in launcher
    mpirun = launcher["containers"][0]["command"]
    assert mpirun[mpirun.index("TF_USE_LEGACY_KERAS=1") + 1 :] == [PACKAGES_PYTHON, "train.py"]
    assert init_named(worker, PACKAGES_CONTAINER)
    assert "sshd" in " ".join(worker["containers"][0]["command"])


@pytest.mark.parametrize(
    "url", ["https://ci:t0ken@pypi.corp/simple", "http://t0ken@pypi.ml.svc:8080/simple"]
)
def test_an_index_url_with_credentials_is_refused_naming_where_they_go(url: str) -> None:
    """In the URL they would show to anyone who reads the job, in the install's log and in the
    job's status; the operator-wide setting would show them to every tenant's pods."""
    with pytest.raises(ValidationError) as job:
        TensorFlowJobSpec.model_validate(
            {"entryScript": "train.py", "pipPackages": ["x"], "packageIndex": {"url": url}}
        )
    assert "name it in credentialsSecret" in str(job.value)
    with pytest.raises(ValidationError) as operator:
        OperatorSettings(package_index_url=url)
    assert "name it in package_index_secret" in str(operator.value)
    # An @ past the host is no credential.
    assert OperatorSettings(package_index_url="https://pypi.corp/simple/@team").package_index_url


# ----- the added containers take the trainer's securityContext and resources ---------------

RESTRICTED_TRAINER = {
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "tensorflow",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsUser": 1000,
                },
                "resources": {
                    "requests": {"cpu": "2", "memory": "4Gi"},
                    "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"},
                    "claims": [{"name": "gpu"}],
                },
            }
        ],
        "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}],
    }
}


def test_added_containers_take_the_trainers_security_context_and_cpu_memory_not_gpus() -> None:
    """A namespace enforcing Pod Security `restricted`, or a quota on limits, once refused
    every pod that shipped code or installed packages: the added containers said nothing."""
    (pod,) = pod_specs(
        pipPackages=["pandas"],
        source={"directory": {"configMap": "job-source"}},
        template=RESTRICTED_TRAINER,
    ).values()
    trainer = RESTRICTED_TRAINER["spec"]["containers"][0]
    for name in (UNPACK_CONTAINER, PACKAGES_CONTAINER):
        added = init_named(pod, name)
        assert added["securityContext"] == trainer["securityContext"], name
        assert added["resources"] == {
            "requests": {"cpu": "2", "memory": "4Gi"},
            "limits": {"cpu": "4", "memory": "8Gi"},
        }, name


def test_added_containers_of_a_trainer_that_says_nothing_meet_the_restricted_profile() -> None:
    (pod,) = pod_specs(
        pipPackages=["pandas"], source={"directory": {"configMap": "job-source"}}
    ).values()
    for name in (UNPACK_CONTAINER, PACKAGES_CONTAINER):
        added = init_named(pod, name)
        assert added["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }, name
        assert "resources" not in added, name
