"""Node pools of the local cluster: read the editable YAML description, build the Nodes."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    runtime: Literal["kwok", "real"] = Field(
        "kwok",
        description=(
            "kwok: simulated nodes whose pods only pretend to run; real: this machine as a real "
            "node (kubelet, containerd), its pods containers of the project's images (root, "
            "one node, one such pool)."
        ),
    )

    @model_validator(mode="after")
    def _one_real_node(self) -> NodePool:
        if self.runtime == "real" and self.count != 1:
            raise ValueError(f"pool {self.name}: a real pool is this machine: count must be 1")
        return self

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
        """The simulated Nodes, created with their status (a real node registers itself)."""
        return [
            pool.node(name)
            for pool in self.pools
            if pool.runtime == "kwok"
            for name in pool.node_names()
        ]

    def real_pools(self) -> list[NodePool]:
        return [pool for pool in self.pools if pool.runtime == "real"]

    def node_names(self) -> list[str]:
        return [name for pool in self.pools for name in pool.node_names()]

    def simulated(self) -> NodePools:
        """The same pools with every node simulated (where a real node cannot run)."""
        return NodePools(pools=[p.model_copy(update={"runtime": "kwok"}) for p in self.pools])

    def pool(self, name: str) -> NodePool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(f"no node pool named {name!r}")


SIMULATED = "nodepools-simulated.yaml"


def load(path: Path | str | None = None) -> NodePools:
    """Read a node-pool file: a path, a packaged file's name, or the packaged default."""
    if path is None or path == SIMULATED:
        name = SIMULATED if path == SIMULATED else "nodepools.yaml"
        text = resources.files(__package__).joinpath(name).read_text()
    else:
        text = Path(path).read_text()
    pools = NodePools.model_validate(yaml.safe_load(text))
    if len(pools.real_pools()) > 1:
        raise ValueError("at most one pool may be real: its node is this machine")
    names = [p.name for p in pools.pools]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"node pool names must be unique; repeated: {sorted(duplicates)}")
    return pools
