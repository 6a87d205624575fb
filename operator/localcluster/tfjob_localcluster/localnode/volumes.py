"""Materialise a pod's volumes as directories on the node, as a kubelet would.

emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes (including the
service-account token that admission adds to every pod) are supported; each becomes a directory
under the pod's own folder that the pod's mount namespace binds at its mountPath.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException


class VolumeError(Exception):
    """A volume the pod cannot start without (a missing ConfigMap or Secret, say)."""


def _write(directory: Path, files: dict[str, bytes], mode: int) -> None:
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def _select(data: dict[str, bytes], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return data
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def _field(pod: dict[str, Any], path: str) -> str:
    metadata = pod["metadata"]
    values = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata["namespace"],
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
    }
    if path in values:
        return values[path]
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return (metadata.get(source) or {}).get(path[len(prefix) + 2 : -2], "")
    raise VolumeError(f"unsupported fieldRef {path}")


class VolumeBuilder:
    def __init__(self, core: k8s.CoreV1Api, pod: dict[str, Any], root: Path) -> None:
        self.core = core
        self.pod = pod
        self.namespace = pod["metadata"]["namespace"]
        self.root = root

    def build(self) -> dict[str, Path]:
        """Every volume of the pod: name -> directory (or file, for hostPath files)."""
        paths: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            paths[volume["name"]] = self._one(volume)
        return paths

    def _one(self, volume: dict[str, Any]) -> Path:
        name = volume["name"]
        if "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                path.mkdir(parents=True, exist_ok=True)
            return path
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            directory.chmod(0o777)
        elif "configMap" in volume:
            self._config_map(volume["configMap"], directory)
        elif "secret" in volume:
            self._secret(volume["secret"], directory)
        elif "downwardAPI" in volume:
            self._downward(
                volume["downwardAPI"].get("items") or [],
                directory,
                volume["downwardAPI"].get("defaultMode", 0o644),
            )
        elif "projected" in volume:
            mode = volume["projected"].get("defaultMode", 0o644)
            for source in volume["projected"].get("sources") or []:
                self._projected(source, directory, mode)
        else:
            kind = next(iter(k for k in volume if k != "name"), "?")
            raise VolumeError(f"volume {name}: {kind} volumes are not supported on the local node")
        return directory

    def _config_map(self, source: dict[str, Any], directory: Path, mode: int | None = None) -> None:
        try:
            found = self.core.read_namespaced_config_map(source["name"], self.namespace)
        except ApiException as error:
            if error.status == 404 and source.get("optional"):
                return
            raise VolumeError(f"configmap {source['name']} not found") from error
        data = {k: v.encode() for k, v in (found.data or {}).items()}
        data |= {k: base64.b64decode(v) for k, v in (found.binary_data or {}).items()}
        _write(
            directory, _select(data, source.get("items")), mode or source.get("defaultMode", 0o644)
        )

    def _secret(self, source: dict[str, Any], directory: Path, mode: int | None = None) -> None:
        name = source.get("secretName") or source.get("name")
        try:
            found = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404 and source.get("optional"):
                return
            raise VolumeError(f"secret {name} not found") from error
        data = {k: base64.b64decode(v) for k, v in (found.data or {}).items()}
        _write(
            directory, _select(data, source.get("items")), mode or source.get("defaultMode", 0o644)
        )

    def _downward(self, items: list[dict[str, Any]], directory: Path, mode: int) -> None:
        files = {}
        for item in items:
            if "fieldRef" in item:
                files[item["path"]] = _field(self.pod, item["fieldRef"]["fieldPath"]).encode()
        _write(directory, files, mode)

    def _projected(self, source: dict[str, Any], directory: Path, mode: int) -> None:
        if "configMap" in source:
            self._config_map(source["configMap"], directory, mode)
        elif "secret" in source:
            self._secret(source["secret"], directory, mode)
        elif "downwardAPI" in source:
            self._downward(source["downwardAPI"].get("items") or [], directory, mode)
        elif "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"]
            request = k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(
                    audiences=[token_source["audience"]] if token_source.get("audience") else [],
                    expiration_seconds=token_source.get("expirationSeconds", 3607),
                    bound_object_ref=k8s.V1BoundObjectReference(
                        kind="Pod",
                        api_version="v1",
                        name=self.pod["metadata"]["name"],
                        uid=self.pod["metadata"]["uid"],
                    ),
                )
            )
            account = self.pod["spec"].get("serviceAccountName") or "default"
            token = self.core.create_namespaced_service_account_token(
                account, self.namespace, request
            ).status.token
            _write(directory, {token_source["path"]: token.encode()}, mode)


def mount_plan(container: dict[str, Any], volumes: dict[str, Path]) -> list[dict[str, Any]]:
    """The bind mounts of one container, for podinit."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise VolumeError(f"volumeMount {mount['name']} names no volume")
        source = volumes[mount["name"]]
        if mount.get("subPath"):
            source = source / mount["subPath"]
        mounts.append(
            {
                "source": str(source),
                "target": mount["mountPath"],
                "readOnly": bool(mount.get("readOnly")),
                "file": source.is_file(),
            }
        )
    return mounts


def resolve_env(
    container: dict[str, Any], pod: dict[str, Any], core: k8s.CoreV1Api, pod_ip: str
) -> dict[str, str]:
    """The container's environment exactly as its spec says (values and valueFrom refs)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            found = core.read_namespaced_config_map(source["configMapRef"]["name"], namespace)
            env |= {prefix + k: v for k, v in (found.data or {}).items()}
        if "secretRef" in source:
            found = core.read_namespaced_secret(source["secretRef"]["name"], namespace)
            env |= {prefix + k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}
    for variable in container.get("env") or []:
        name = variable["name"]
        if "value" in variable:
            env[name] = variable["value"]
            continue
        reference = variable.get("valueFrom") or {}
        if "fieldRef" in reference:
            path = reference["fieldRef"]["fieldPath"]
            env[name] = pod_ip if path == "status.podIP" else _field(pod, path)
        elif "configMapKeyRef" in reference:
            ref = reference["configMapKeyRef"]
            found = core.read_namespaced_config_map(ref["name"], namespace)
            env[name] = (found.data or {}).get(ref["key"], "")
        elif "secretKeyRef" in reference:
            ref = reference["secretKeyRef"]
            found = core.read_namespaced_secret(ref["name"], namespace)
            env[name] = base64.b64decode((found.data or {}).get(ref["key"], "")).decode()
        else:
            env[name] = ""
    return env
