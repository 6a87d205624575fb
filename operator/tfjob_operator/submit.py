"""Submit a TensorFlowJob from a client, with a local source directory if it has one.

The directory is packed and checked before anything is created (it must hold the entry script
and fit a ConfigMap); then the job is created, and its source right after, owned by the job so
it goes with it. The operator starts no pod before the source is there.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from .api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .source import pack_directory, source_config_map, source_config_map_name


def with_source_directory(manifest: dict[str, Any], directory: Path) -> tuple[dict, bytes]:
    """The manifest naming the ConfigMap its directory travels in, and the packed directory
    (raises SourceError, before anything is created, when it cannot be shipped)."""
    manifest = copy.deepcopy(manifest)
    spec = manifest.setdefault("spec", {})
    if "tfReplicaSpecs" in spec:
        raise ValueError(
            "a source directory ships the code of an estimator-style job (spec.entryScript); "
            "a Kubeflow-form job names its code in its pod templates"
        )
    archive = pack_directory(directory, spec.get("entryScript"))
    name = manifest["metadata"]["name"]
    spec["source"] = {"directory": {"configMap": source_config_map_name(name)}}
    return manifest, archive


def submit(
    api: k8s.ApiClient,
    manifest: dict[str, Any],
    *,
    namespace: str,
    source_directory: Path | None = None,
) -> dict[str, Any]:
    """Create the job (and upload its source directory); return the job as created."""
    archive = None
    if source_directory is not None:
        manifest, archive = with_source_directory(manifest, source_directory)
    manifest = {**manifest, "apiVersion": API_VERSION, "kind": KIND}
    custom = k8s.CustomObjectsApi(api)
    job: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, manifest
    )
    if archive is None:
        return job
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    try:
        k8s.CoreV1Api(api).create_namespaced_config_map(
            namespace,
            source_config_map(name, namespace, uid, archive, api_version=API_VERSION, kind=KIND),
        )
    except Exception:
        # A job without its source would wait for ever: take it back, leave nothing behind.
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        raise
    return job
