"""deploy/: plain manifests rendered from the chart, for `kubectl apply -f deploy/` and GitOps.
They must be fresh, apply with client-side apply, and re-apply as a no-op."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.constants import REPOSITORY
from tests.support.install import DEPLOY
from tfjob_localcluster import control

pytestmark = pytest.mark.timeout(180)

GENERATE = REPOSITORY / "charts" / "generate.py"
# Client-side apply keeps the whole object in this annotation; the API server caps annotations.
LAST_APPLIED_LIMIT = 262144
NAMESPACE = "tfjob-system"


def test_generated_files_are_fresh() -> None:
    """deploy/ and the chart's generated policy equal what the chart and the code produce."""
    result = subprocess.run(
        [sys.executable, str(GENERATE), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_when_deploy_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(GENERATE.parent))
    try:
        import generate  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(GENERATE.parent))
    stale = tmp_path / "deploy"
    stale.mkdir()
    for path in DEPLOY.glob("*.yaml"):
        (stale / path.name).write_text(path.read_text())
    (stale / "02-tfjob-operator.yaml").write_text("# edited by hand\n")
    (stale / "99-extra.yaml").write_text("{}\n")
    monkeypatch.setattr(generate, "DEPLOY", stale)
    assert generate.main(["--check"]) == 1


def test_every_object_fits_client_side_apply() -> None:
    """Client-side apply stores each object, as compact JSON, in an annotation (256 KiB for
    all of an object's annotations): half of that at most, to grow into."""
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                size = len(json.dumps(document, separators=(",", ":")).encode())
                assert size < LAST_APPLIED_LIMIT * 0.5, (path.name, document["metadata"]["name"])


def test_kubectl_apply_twice_is_a_no_op(kubectl, crd: str, api_client: k8s.ApiClient) -> None:
    first = kubectl("apply", "-f", str(DEPLOY), timeout=120)
    applied = first.stdout.splitlines()
    assert f"namespace/{NAMESPACE} created" in applied or f"namespace/{NAMESPACE} unchanged" in (
        applied
    )
    assert "deployment.apps/tfjob-operator created" in applied
    assert "customresourcedefinition.apiextensions.k8s.io/tensorflowjobs.tfjob.dev" in first.stdout
    assert "metadata.annotations: Too long" not in first.stderr
    try:
        # The operator's pod is admitted in a namespace that enforces the restricted profile.
        kubectl(
            "rollout",
            "status",
            "deployment/tfjob-operator",
            "-n",
            NAMESPACE,
            "--timeout=60s",
            timeout=90,
        )
        second = kubectl("apply", "-f", str(DEPLOY), timeout=120)
        lines = second.stdout.splitlines()
        assert lines, second.stderr
        assert [line for line in lines if not line.endswith(" unchanged")] == []
        assert len(lines) == len(applied)
        diff = kubectl("diff", "-f", str(DEPLOY), check=False, timeout=120)
        assert diff.returncode == 0, diff.stdout + diff.stderr

        crd_object = k8s.ApiextensionsV1Api(api_client).read_custom_resource_definition(crd)
        annotation = crd_object.metadata.annotations[
            "kubectl.kubernetes.io/last-applied-configuration"
        ]
        print(
            f"\nlast-applied annotation of the TensorFlowJob CRD: {len(annotation)} bytes "
            f"({len(annotation) / LAST_APPLIED_LIMIT:.0%} of the limit)"
        )
    finally:
        # Not the CRDs: every test of the session shares them.
        kubectl("delete", "-f", str(DEPLOY / "02-tfjob-operator.yaml"), "--wait=false")
        kubectl("delete", "namespace", NAMESPACE, "--wait=false")
        control.wait_for_deletion(k8s.CoreV1Api(api_client).list_namespace, NAMESPACE, timeout=60)
