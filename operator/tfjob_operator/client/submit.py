"""Submit a TensorFlowJob from a client, with a local source directory if it has one.

The directory is packed and checked before anything is created (it must hold the entry script
and fit a ConfigMap); then the job is created, and its source right after, owned by the job so
it goes with it. The operator starts no pod before the source is there.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config

from tfjob_operator.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tfjob_operator.core.source import source_config_map_name

from .pack import SourceError, pack_directory, source_config_map


def connect(
    kubeconfig: str | None, *, context: str | None = None, namespace: str | None = None
) -> tuple[k8s.ApiClient, str]:
    """A client of the cluster kubectl would use, and the namespace: the one given, else the
    context's, else default. (Raises config.ConfigException without a usable kubeconfig.)"""
    api = config.new_client_from_config(config_file=kubeconfig, context=context)
    _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    return api, namespace or active["context"].get("namespace") or "default"


def submit_reporting(
    api: k8s.ApiClient,
    manifest: dict[str, Any],
    *,
    namespace: str,
    source_directory: Path | None,
    prog: str,
) -> tuple[int, dict[str, Any] | None]:
    """``submit`` for a command line: (0, the job), or its exit code with the refusal told on
    stderr (2: nothing could be shipped, so nothing was created; 1: the API server refused)."""
    try:
        return 0, submit(api, manifest, namespace=namespace, source_directory=source_directory)
    except (SourceError, ValueError) as error:
        print(f"{prog}: {error}; nothing was created", file=sys.stderr)
        return 2, None
    except k8s.ApiException as error:
        print(f"{prog}: the API server refused it: {error.body}", file=sys.stderr)
        return 1, None


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
