"""Generate the CustomResourceDefinition from the pydantic models, and check it for drift.

pydantic emits JSON Schema 2020-12; a CRD needs a structural OpenAPI v3 subset. The rules here
are the few that bridge them: inline ``$ref`` (a field's own description wins over the model's),
drop titles and defaults (defaults live in the models, so changing one never rewrites stored
objects), turn ``Optional`` into the plain type, open models into
``x-kubernetes-preserve-unknown-fields``, ``const`` into ``enum``.

    python -m tfjob_operator.api.crd            # write crds/ (and the chart's copy, if present)
    python -m tfjob_operator.api.crd --check    # exit 1 when the committed files differ
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from . import v1alpha1

_DROPPED = {"title", "default", "discriminator"}

PRINTER_COLUMNS = [
    {
        "name": "State",
        "type": "string",
        "jsonPath": ".status.state",
        "description": "The latest true condition.",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": ".status.ready",
        "description": "Ready pods / desired pods.",
    },
    {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    },
]


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = definitions[node.pop("$ref").removeprefix("#/$defs/")]
        node = {**target, **node}  # the referring field's own keys (description...) win
    if "allOf" in node and len(node["allOf"]) == 1:
        (only,) = node.pop("allOf")
        node = {**_inline(only, definitions), **node}
    return {key: _inline(value, definitions) for key, value in node.items()}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "anyOf" in node:
        node = dict(node)
        choices = [c for c in node.pop("anyOf") if c.get("type") != "null"]
        if len(choices) != 1:
            raise ValueError(f"unions have no structural schema: {choices}")
        node = {**choices[0], **node}
    node = {k: v for k, v in node.items() if k not in _DROPPED}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if node.get("additionalProperties") is True:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if (
        node.get("type") == "object"
        and "properties" not in node
        and "additionalProperties" not in node
    ):
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "x-kubernetes-int-or-string" in node:
        node.pop("type", None)
    if "required" in node and not node["required"]:
        del node["required"]
    for key in ("properties",):
        if key in node:
            node[key] = {name: _structural(value) for name, value in node[key].items()}
    for key in ("items", "additionalProperties"):
        if key in node:
            node[key] = _structural(node[key])
    return node


def openapi_schema() -> dict[str, Any]:
    raw = v1alpha1.TensorFlowJob.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    for name, definition in definitions.items():
        model = getattr(v1alpha1, name, None)
        config = getattr(model, "model_config", None) if isinstance(model, type) else None
        if config and config.get("extra") == "allow":
            definition["x-kubernetes-preserve-unknown-fields"] = True
    schema = _structural(_inline(raw, definitions))
    properties = schema["properties"]
    # apiVersion, kind and metadata are validated by the API server itself.
    for key in ("apiVersion", "kind", "metadata"):
        properties.pop(key)
    schema["required"] = ["spec"]
    return schema


def custom_resource_definition() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}"},
        "spec": {
            "group": v1alpha1.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.SINGULAR,
                "shortNames": list(v1alpha1.SHORT_NAMES),
                "categories": ["all", "tfjob"],
            },
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


HEADER = (
    "# Generated by `python -m tfjob_operator.api.crd` from operator/tfjob_operator/api/.\n"
    "# Do not edit: change the models and regenerate.\n"
)


def render() -> str:
    return HEADER + yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=100)


def repository_root() -> Path:
    return Path(__file__).resolve().parents[3]


def targets(root: Path) -> list[Path]:
    name = f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}.yaml"
    paths = [root / "crds" / name]
    chart = root / "charts" / "tfjob-operator"
    if chart.is_dir():
        paths.append(chart / "crds" / name)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    text = render()
    stale = []
    for path in targets(repository_root()):
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path} ({len(text.encode())} bytes)")
    if stale:
        print("stale CRDs (run `python -m tfjob_operator.api.crd`): " + ", ".join(map(str, stale)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
