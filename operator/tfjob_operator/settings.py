"""Operator settings: everything an installation can tune, in one place.

Each setting has a flag of `tfjob-operator run` and an environment variable `TFJOB_<NAME>`
(the flag wins), so a Helm chart and a person at a terminal configure it the same way.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tfjob_operator.api.labels import (
    GPU_RESOURCE,
)
from tfjob_operator.api.v1alpha1 import INDEX_URL_PATTERN, INDEX_USERINFO, INDEX_USERINFO_MESSAGE


class NodePoolSetting(BaseModel):
    """What the operator knows of one node pool."""

    model_config = ConfigDict(frozen=True)

    gpu: bool = Field(True, description="Whether its nodes have GPUs.")


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    cluster_domain: str = Field("cluster.local", description="DNS domain of the cluster.")
    node_pool_label: str = Field(
        "tfjob.dev/node-pool",
        description=(
            "Node label that names a node's pool, e.g. cloud.google.com/gke-nodepool, "
            "eks.amazonaws.com/nodegroup or kubernetes.azure.com/agentpool."
        ),
    )
    default_gpu_node_pool: str | None = Field(
        None, description="Pool for GPU pods of jobs that name none (None: any GPU node)."
    )
    node_pools: dict[str, NodePoolSetting] = Field(
        default_factory=dict,
        description="Known pools; a job asking for GPUs on a pool known to have none fails.",
    )
    gpu_toleration: dict[str, str] = Field(
        default_factory=lambda: {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
        description="Toleration added to pods that request GPUs.",
    )
    default_image: str = Field(
        "tensorflow/tensorflow:2.21.0", description="Trainer image of estimator-style CPU jobs."
    )
    default_gpu_image: str = Field(
        "tensorflow/tensorflow:2.21.0-gpu", description="Trainer image of estimator-style GPU jobs."
    )
    default_horovod_image: str = Field(
        "tfjob-horovod:0.28.1-tf2.18.1",
        description="Image of estimator-style mpi jobs (built from images/horovod).",
    )
    default_horovod_image_user: int | None = Field(
        1000,
        ge=1,
        description=(
            "The non-root uid (and gid) that image runs as: its pods say so in their "
            "securityContext and get it as fsGroup, so its sshd and mpirun can read the job's "
            "SSH key. None for an image that runs as root."
        ),
    )
    package_index_url: str | None = Field(
        None,
        pattern=INDEX_URL_PATTERN,
        description=(
            "Index that jobs' pipPackages install from when the job names none (None: PyPI), "
            "without credentials: every job's pod would show them (package_index_secret)."
        ),
    )
    package_index_secret: str | None = Field(
        None,
        description=(
            "basic-auth Secret (username, password), in each job's namespace, for that index."
        ),
    )
    gang_scheduling: bool = Field(
        True,
        description=(
            "Start each distributed job's pods all or nothing through a PodGroup, where the "
            "cluster serves the API (scheduling.k8s.io v1alpha2 or v1beta1: Kubernetes 1.36+ "
            "with the GenericWorkload and GangScheduling gates)."
        ),
    )
    pod_group_api: str | None = Field(
        None,
        description=(
            "The PodGroup apiVersion in use: found by discovery at startup when gang_scheduling "
            "is on (None: the cluster serves none, and pods start one by one)."
        ),
    )
    queueing: bool = Field(
        True,
        description=(
            "Act on a job's Kueue queue (runPolicy.schedulingPolicy.queue, or the label "
            "kueue.x-k8s.io/queue-name): its pods join a Kueue pod group that waits for quota. "
            "Off: a job naming a queue fails (InvalidSpec), never runs past the queue."
        ),
    )
    manage_admission_policy: bool = Field(
        True,
        description=(
            "Install the node-pool ValidatingAdmissionPolicy at startup. Off when the installer "
            "ships it (the Helm chart does), so the operator needs no admission RBAC."
        ),
    )
    cluster_scanning: bool = Field(
        True,
        description=(
            "Let kopf list and watch CRDs (and namespaces, for namespace globs) cluster-wide. "
            "Off for an operator given only namespaced Roles: namespaces are then literal names."
        ),
    )

    max_concurrent_passes: int = Field(
        256,
        ge=1,
        description=(
            "Passes over different jobs that run at once; more wait in a queue (its depth is "
            "the tfjob_operator_queue_depth metric)."
        ),
    )

    @field_validator("package_index_url")
    @classmethod
    def _index_without_credentials(cls, url: str | None) -> str | None:
        if url is not None and re.match(INDEX_USERINFO, url):
            raise ValueError(
                INDEX_USERINFO_MESSAGE.replace("credentialsSecret", "package_index_secret")
            )
        return url

    @classmethod
    def from_environment(cls, overrides: dict[str, Any] | None = None) -> OperatorSettings:
        """Read `TFJOB_<FIELD>` variables (JSON for mappings), then apply ``overrides``."""
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = os.environ.get(f"TFJOB_{name.upper()}")
            if raw is None:
                continue
            if raw == "" and type(None) in get_args(field.annotation):
                values[name] = None  # empty: unset (the chart writes null so)
                continue
            annotation = str(field.annotation)
            values[name] = json.loads(raw) if annotation.startswith("dict") else raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.model_validate(values)
