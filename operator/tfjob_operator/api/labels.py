"""The labels and annotations the operator puts on a job's children, and the GPU resource name:
the wire contract that the operator, its client, the chart and the tests share."""

from __future__ import annotations

GPU_RESOURCE = "nvidia.com/gpu"
JOB_NAME_LABEL = "tfjob.dev/job-name"
REPLICA_TYPE_LABEL = "tfjob.dev/replica-type"
REPLICA_INDEX_LABEL = "tfjob.dev/replica-index"
JOB_ROLE_LABEL = "tfjob.dev/job-role"
ATTEMPT_LABEL = "tfjob.dev/attempt"
SPEC_HASH_ANNOTATION = "tfjob.dev/spec-hash"
OPERATOR_PREFIX = "tfjob.dev"
