"""Simulated node pools: read the editable YAML description and turn it into Node objects."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

NODE_POOL_LABEL = "tfjob.dev/node-pool"
GPU_RESOURCE = "nvidia.com/gpu"
KWOK_MANAGED_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
DEFAULT_GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


class Taint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    value: str = ""
    effect: str = Field(pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$")


class NodePool(BaseModel):
    """One pool of identical simulated nodes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    count: int = Field(ge=0, le=5000)
    gpus: int = Field(default=0, ge=0)
    gpu_product: str | None = Field(default=None, alias="gpuProduct")
    cpu: str = "16"
    memory: str = "64Gi"
    max_pods: int = Field(default=110, ge=1, alias="maxPods")
    instance_type: str | None = Field(default=None, alias="instanceType")
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] | None = None

    def node_names(self) -> list[str]:
        return [f"{self.name}-{index}" for index in range(self.count)]

    def effective_taints(self) -> list[dict[str, str]]:
        if self.taints is not None:
            return [t.model_dump() for t in self.taints]
        return [dict(DEFAULT_GPU_TAINT)] if self.gpus else []

    def node(self, name: str) -> dict[str, Any]:
        """The Node object, created with its status: kwok keeps capacity it finds there."""
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            NODE_POOL_LABEL: self.name,
        }
        if self.instance_type:
            labels["node.kubernetes.io/instance-type"] = self.instance_type
        resources_ = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.max_pods)}
        if self.gpus:
            labels["nvidia.com/gpu.present"] = "true"
            labels["nvidia.com/gpu.count"] = str(self.gpus)
            if self.gpu_product:
                labels["nvidia.com/gpu.product"] = self.gpu_product
            resources_[GPU_RESOURCE] = str(self.gpus)
        labels.update(self.labels)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {KWOK_MANAGED_ANNOTATION[0]: KWOK_MANAGED_ANNOTATION[1]},
            },
            "spec": {"taints": self.effective_taints()},
            "status": {"capacity": resources_, "allocatable": dict(resources_)},
        }


class NodePools(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pools: list[NodePool]

    def nodes(self) -> list[dict[str, Any]]:
        return [pool.node(name) for pool in self.pools for name in pool.node_names()]

    def pool(self, name: str) -> NodePool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(f"no node pool named {name!r}")


def load(path: Path | None = None) -> NodePools:
    """Read a node-pool file; the packaged default when ``path`` is None."""
    if path is None:
        text = resources.files(__package__).joinpath("nodepools.yaml").read_text()
    else:
        text = Path(path).read_text()
    pools = NodePools.model_validate(yaml.safe_load(text))
    names = [p.name for p in pools.pools]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"node pool names must be unique; repeated: {sorted(duplicates)}")
    return pools
