"""A package index as a pod of the local cluster (its pods have no route out), behind basic
auth: tests/support/package_index.py serving a wheel that needs numpy (the images have it) and
two sdists pip must build, the second's build needing the first (see build_sdist)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from kubernetes import client as k8s

from tests.support.constants import ON_REAL_NODE
from tests.support.package_index import build_sdist, build_wheel
from tfjob_localcluster import control

INDEX_PORT = 8080
USERNAME, PASSWORD = "trainer", "in-cluster/s3cret"
CREDENTIALS = "pypi-creds"  # the basic-auth Secret with them, in a job's namespace
SPY_HELPER = "tfjob-spy-helper==1.0.0"
GREETING = """\
import numpy

def greet(name):
    return f"hello {name} from the team index, beside numpy {numpy.__version__}"
"""


def credentials_secret(core: k8s.CoreV1Api, namespace: str) -> None:
    """The index's basic-auth Secret, where the jobs that install from it run."""
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": CREDENTIALS},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": USERNAME, "password": PASSWORD},
        },
    )


def serve_in_cluster(core: k8s.CoreV1Api, namespace: str, image: str) -> str:
    """The index as a pod of ``image`` on the real node, behind a Service in ``namespace``;
    its URL once it is Ready."""
    with tempfile.TemporaryDirectory() as scratch:
        wheel = build_wheel(
            Path(scratch), "tfjob-demo-greeting", "1.0.0", GREETING, ["numpy>=1.20"]
        )
        content = wheel.read_bytes()
        # Two packages pip must build, the second needing the first to build: pip installs
        # that one with a pip it runs, the index URL on its command line.
        helper = build_sdist(Path(scratch), "tfjob-spy-helper", "1.0.0", "", [])
        spy = build_sdist(Path(scratch), "tfjob-spy-build", "1.0.0", "", [SPY_HELPER])
        sdists = {path.name: path.read_bytes() for path in (helper, spy)}
    server = (Path(__file__).parent / "package_index.py").read_text()
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "package-index"},
            "data": {"package_index.py": server},
            "binaryData": {
                "wheel": base64.b64encode(content).decode(),
                **{
                    f"sdist-{i}": base64.b64encode(data).decode()
                    for i, data in enumerate(sdists.values())
                },
            },
        },
    )
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "pypi", "labels": {"app": "pypi"}},
            "spec": {
                **ON_REAL_NODE,
                "containers": [
                    {
                        "name": "index",
                        "image": image,
                        "command": ["python", "/srv/index/package_index.py", "/srv/index/wheels"],
                        "args": [str(INDEX_PORT)],
                        "env": [
                            {"name": "INDEX_USERNAME", "value": USERNAME},
                            {"name": "INDEX_PASSWORD", "value": PASSWORD},
                        ],
                        "ports": [{"containerPort": INDEX_PORT}],
                        "readinessProbe": {
                            "tcpSocket": {"port": INDEX_PORT},
                            "periodSeconds": 1,
                        },
                        "volumeMounts": [{"name": "index", "mountPath": "/srv/index"}],
                    }
                ],
                "volumes": [
                    {
                        "name": "index",
                        "configMap": {
                            "name": "package-index",
                            "items": [
                                {"key": "package_index.py", "path": "package_index.py"},
                                {"key": "wheel", "path": f"wheels/{wheel.name}"},
                                *(
                                    {"key": f"sdist-{i}", "path": f"wheels/{name}"}
                                    for i, name in enumerate(sdists)
                                ),
                            ],
                        },
                    }
                ],
            },
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "pypi"},
            "spec": {
                "selector": {"app": "pypi"},
                "ports": [{"port": INDEX_PORT, "targetPort": INDEX_PORT}],
            },
        },
    )
    control.wait_for_pod(
        core,
        namespace,
        "pypi",
        lambda pod: any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
        ),
        timeout=60,
    )
    return f"http://pypi.{namespace}.svc.cluster.local:{INDEX_PORT}/simple"
