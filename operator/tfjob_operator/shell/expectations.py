"""The operator's own writes that the watch has not shown yet, for one job.

A pod just created counts as existing, a pod just deleted as going, a Service or ConfigMap just
created as there, until the watch shows them or EXPECTATION_SECONDS pass (a lost event heals
itself). A name the API server said is taken, by nothing the watch shows, is somebody else's
for CONFLICT_RECHECK_SECONDS. The same idea as Kubernetes' ControllerExpectations: without it a
pass right after a create would create the pod again.
"""

from __future__ import annotations

import dataclasses

from tfjob_operator.core.observed import Observed, PodObservation

# How long an object the operator created (or deleted) counts as such without the watch showing
# it: Kubernetes' own controllers wait 5 minutes. A watch that broke takes up to 30 s to come
# back, and a pod made but not shown must not look gone: in a running collective a member
# that is gone restarts the whole job.
EXPECTATION_SECONDS = 300.0
# How long a name the API server said is taken counts as somebody else's before a pass tries
# to create it again.
CONFLICT_RECHECK_SECONDS = 10.0


@dataclasses.dataclass
class Expectations:
    """One job's writes not yet seen, each with the monotonic time it was made."""

    created: dict[str, tuple[float, PodObservation]] = dataclasses.field(default_factory=dict)
    deleted: dict[str, float] = dataclasses.field(default_factory=dict)  # pod uid -> when
    service: float | None = None
    objects: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)  # created
    # (kind, name) whose create was refused as existing while the cache shows none of the
    # job's: held by an object the watch does not show (one without the job's label).
    conflicts: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)

    def empty(self) -> bool:
        return (
            not (self.created or self.deleted or self.service is not None or self.objects)
            and not self.conflicts
        )

    def merge(
        self, seen: Observed, job_name: str, job_uid: str, now: float
    ) -> tuple[Observed, float | None]:
        """What the cache ``seen``, with these writes added and those it shows (or too old)
        dropped; and, while a name is somebody else's, the seconds until a pass should try to
        create it again."""
        pods = list(seen.pods)
        service_owners = seen.service_owners
        objects = list(seen.objects)
        deadline = now - EXPECTATION_SECONDS
        names = {p.name for p in pods}
        for name, (when, pod) in list(self.created.items()):
            if name in names or when < deadline:
                del self.created[name]
            else:
                pods.append(pod)
        present = {p.uid: p for p in pods}
        for uid, when in list(self.deleted.items()):
            pod = present.get(uid)
            # Kept while the pod is going, however long its grace period: its removal, even
            # of a pod that had failed, is the operator's own (see Controller.pod_deleted).
            if pod is None or (when < deadline and not pod.deleting):
                del self.deleted[uid]
        pods = [dataclasses.replace(p, deleting=True) if p.uid in self.deleted else p for p in pods]
        if self.service is not None:
            if job_uid in service_owners or self.service < deadline:
                self.service = None
            else:
                service_owners = (*service_owners, job_uid)
        owned = {(kind, name) for kind, name, owner in objects if owner == job_uid}
        for kind_name, when in list(self.objects.items()):
            if kind_name in owned or when < deadline:
                del self.objects[kind_name]
            else:
                objects.append((*kind_name, job_uid))
        # A name the API server said is taken, by nothing the watch shows: somebody else's.
        owned |= {("Pod", p.name) for p in pods if p.owner_uid == job_uid}
        if job_uid in service_owners:
            owned.add(("Service", job_name))
        recheck: float | None = None
        for (kind, name), when in list(self.conflicts.items()):
            left = when + CONFLICT_RECHECK_SECONDS - now
            if (kind, name) in owned or left <= 0:
                del self.conflicts[(kind, name)]
                continue
            recheck = left if recheck is None else min(recheck, left)
            if kind == "Pod":
                pods.append(PodObservation(name, None, None, "Unknown", uid=f"conflict/{name}"))
            elif kind == "Service":
                service_owners = (*service_owners, None)
            else:
                objects.append((kind, name, None))
        return Observed(tuple(pods), service_owners, tuple(objects)), recheck
