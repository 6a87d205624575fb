"""A Kubernetes Event the operator posts about a job: plain data shared by the pure core (which
decides them) and the API-server layer (which posts them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobEvent:
    type: str  # Normal or Warning
    reason: str
    message: str
