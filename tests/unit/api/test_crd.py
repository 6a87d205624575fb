"""The CRD is generated from the models, committed, structural and documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tfjob_operator.api import crd

pytestmark = pytest.mark.timeout(10)

REPOSITORY = Path(__file__).resolve().parents[3]
# Client-side `kubectl apply` stores the whole object in an annotation capped at 256 KiB.
LAST_APPLIED_LIMIT = 262144


def committed() -> str:
    return (REPOSITORY / "crds" / "tensorflowjobs.tfjob.dev.yaml").read_text()


def test_committed_crd_matches_the_models() -> None:
    assert committed() == crd.render(), (
        "crds/ is stale: run `python -m tfjob_operator.api.crd` and commit the result"
    )


def test_chart_copy_matches_the_models() -> None:
    """helm installs the CRD from the chart's crds/, so that copy must not drift either."""
    chart_copy = REPOSITORY / "charts" / "tfjob-operator" / "crds" / "tensorflowjobs.tfjob.dev.yaml"
    assert chart_copy.read_text() == crd.render(), (
        "charts/tfjob-operator/crds/ is stale: run `python -m tfjob_operator.api.crd` and commit"
    )


def test_check_mode_reports_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "tensorflowjobs.tfjob.dev.yaml").write_text("stale\n")
    monkeypatch.setattr(crd, "repository_root", lambda: tmp_path)
    assert crd.main(["--check"]) == 1
    assert crd.main([]) == 0
    assert crd.main(["--check"]) == 0


def test_check_mode_reports_drift_of_the_chart_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart_crds = tmp_path / "charts" / "tfjob-operator" / "crds"
    chart_crds.mkdir(parents=True)
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "tensorflowjobs.tfjob.dev.yaml").write_text(crd.render())
    (chart_crds / "tensorflowjobs.tfjob.dev.yaml").write_text("stale\n")
    monkeypatch.setattr(crd, "repository_root", lambda: tmp_path)
    assert crd.main(["--check"]) == 1
    assert crd.main([]) == 0
    assert (chart_crds / "tensorflowjobs.tfjob.dev.yaml").read_text() == crd.render()
    assert crd.main(["--check"]) == 0


def test_crd_is_small_enough_for_client_side_apply() -> None:
    """Client-side `kubectl apply` keeps the whole object, as compact JSON, in its
    last-applied-configuration annotation, and annotations may take 256 KiB in all."""
    stored = json.dumps(yaml.safe_load(committed()), separators=(",", ":"))
    size = len(stored.encode())
    print(f"\nCRD as kubectl stores it: {size} bytes ({size / LAST_APPLIED_LIMIT:.0%} of 256 KiB)")
    assert size < LAST_APPLIED_LIMIT * 0.5


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    found = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def schema() -> dict[str, Any]:
    document = yaml.safe_load(committed())
    return document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_schema_is_structural() -> None:
    forbidden = {
        "$ref",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "const",
        "title",
        "default",
        "uniqueItems",
    }
    for path, node in walk(schema()):
        assert not forbidden & set(node), f"{path} uses {forbidden & set(node)}"
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_every_field_has_a_description() -> None:
    """So that `kubectl explain tensorflowjob.spec...` teaches the API."""
    missing = [
        path
        for path, node in walk(schema())
        if path and not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert missing == []


def test_status_subresource_printer_columns_and_names() -> None:
    document = yaml.safe_load(committed())
    version = document["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["State", "Ready", "Age"]
    names = document["spec"]["names"]
    assert names["shortNames"] == ["tfj"]  # Kubeflow's TFJob uses `tfjob`/`tfjobs`
    assert document["spec"]["group"] == "tfjob.dev"
