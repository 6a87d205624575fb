"""The cache of one kind of the operator's children, keyed by job, fed by a ``ListWatch``.

A pass needs only a small observation of each pod, Service and ConfigMap, so each object is
stored as that observation under its job (its job-name label), and the controller is told only
when an observation changed (a pod being bound to a node changes nothing a pass reads). Passes
wait until every informer has listed once, so no pass sees a half-listed world.
"""

from __future__ import annotations

import fnmatch
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .kube import Kube
from .listwatch import ListWatch

T = TypeVar("T")
JobKey = tuple[str, str]  # (namespace, job name)


def watch_scopes(namespaces: list[str]) -> tuple[list[str | None], Callable[[str], bool]]:
    """Where to list and watch (None: every namespace), and which namespaces count.

    Literal names are watched one by one (enough for namespaced RBAC); patterns (kopf's globs,
    `!` to exclude) need one cluster-wide watch, filtered here.
    """
    if not namespaces:
        return [None], lambda namespace: True
    if all(not any(c in n for c in "*?[!") for n in namespaces):
        return list(dict.fromkeys(namespaces)), lambda namespace: True
    include = [n for n in namespaces if not n.startswith("!")]
    exclude = [n[1:] for n in namespaces if n.startswith("!")]

    def matches(namespace: str) -> bool:
        return (not include or any(fnmatch.fnmatchcase(namespace, n) for n in include)) and not any(
            fnmatch.fnmatchcase(namespace, n) for n in exclude
        )

    return [None], matches


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """What the cache takes of one object: its uid, the job it is kept under (None: none, or
    not kept), whether it is being deleted, and its observation (None when not kept)."""

    uid: str
    key: JobKey | None
    deleting: bool
    observation: T | None


class Informer(Generic[T]):
    """Observations of the objects of one resource that carry ``label``, by job."""

    def __init__(
        self,
        kube: Kube,
        resource: str,
        label: str,
        observe: Callable[[dict[str, Any]], T],
        on_change: Callable[[JobKey], None],
        namespaces: list[str] | None = None,
        *,
        metadata_only: bool = False,
        on_deleted: Callable[[JobKey, T, T | None], None] | None = None,
        accepts: Callable[[dict[str, Any]], bool] | None = None,
        foreseen: Callable[[JobKey, T], bool] | None = None,
    ) -> None:
        # Which objects of the label to keep, by their metadata (the label alone anyone can
        # write: the pods a tenant labels cost a check, not an observation and a cache entry).
        self.accepts = accepts
        # Told of each object deleted while watched: its last state, and its state before its
        # deletion began (None if it was first seen going). E.g. a pod that the pod garbage
        # collector failed, then force-deleted with its lost node: Failed before it went.
        self.on_deleted = on_deleted
        # Whether an object's first sight is just what a pass of its job made (the create's
        # answer): kept, and nobody told, since that pass counted it already. (When the watch
        # shows it before the create answers, it is not foreseen and asks for a pass.)
        self.foreseen = foreseen
        self.resource = resource
        self.label = label
        self.observe = observe
        self.on_change = on_change
        self.scopes, self.counts = watch_scopes(namespaces or [])
        self.listwatch = ListWatch(
            kube,
            resource,
            self._path,
            self.scopes,
            on_list=self._replace,
            on_event=self.apply,
            metadata_only=metadata_only,  # objects' metadata alone (Secrets: never their data)
            keep=self.entry,  # a list's objects are observed page by page, never held whole
        )
        self.synced = self.listwatch.synced
        self._by_job: dict[JobKey, dict[str, T]] = {}
        self._job_of: dict[str, JobKey] = {}  # uid -> the job it is stored under
        # uid -> its state before its deletion began, for objects being deleted (a deletion
        # shows as one or more MODIFIED events with a deletionTimestamp, then DELETED).
        self._before_deletion: dict[str, T | None] = {}

    # ----- the cache ---------------------------------------------------------------------------
    def get(self, key: JobKey, default: Iterable[T] = ()) -> Iterable[T]:
        objects = self._by_job.get(key)
        return objects.values() if objects else default

    def __len__(self) -> int:
        return len(self._job_of)

    def entry(self, obj: dict[str, Any]) -> Entry[T] | None:
        """What the cache takes of ``obj`` (None: it has no uid)."""
        metadata = obj.get("metadata") or {}
        uid = metadata.get("uid")
        if not uid:
            return None
        job_name = (metadata.get("labels") or {}).get(self.label)
        namespace = metadata.get("namespace", "")
        kept = job_name and self.counts(namespace)
        if kept and self.accepts is not None and not self.accepts(metadata):
            kept = False
        key = (namespace, job_name) if kept else None
        # Observed when kept, or when it was (its last state, for on_deleted).
        observed = key is not None or uid in self._job_of
        return Entry(
            uid,
            key,
            bool(metadata.get("deletionTimestamp")),
            self.observe(obj) if observed else None,
        )

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) into the cache."""
        entry = self.entry(obj)
        if entry is not None:
            self._store(kind, entry)

    def _store(self, kind: str, entry: Entry[T]) -> None:
        uid, key = entry.uid, entry.key
        before = self._job_of.get(uid)
        if before is not None and (kind == "DELETED" or before != key):
            cached = self._by_job[before][uid]
            before_deletion = self._before_deletion.get(uid, cached)
            self._forget(uid, before)
            if kind == "DELETED" and self.on_deleted is not None:
                assert entry.observation is not None  # it was kept: observed
                self.on_deleted(before, entry.observation, before_deletion)
            self.on_change(before)
        if kind == "DELETED" or key is None:
            return
        observation = entry.observation
        assert observation is not None  # kept: observed
        if entry.deleting and uid not in self._before_deletion:
            self._before_deletion[uid] = self._by_job.get(key, {}).get(uid)
        objects = self._by_job.setdefault(key, {})
        known = objects.get(uid)
        if known != observation:
            objects[uid] = observation
            self._job_of[uid] = key
            if known is None and self.foreseen is not None and self.foreseen(key, observation):
                return
            self.on_change(key)

    def _forget(self, uid: str, key: JobKey) -> None:
        self._job_of.pop(uid, None)
        self._before_deletion.pop(uid, None)
        objects = self._by_job.get(key)
        if objects is not None:
            objects.pop(uid, None)
            if not objects:
                del self._by_job[key]

    def _replace(self, scope: str | None, entries: list[Entry[T] | None]) -> None:
        """A fresh list of ``scope`` (its ``entry`` each): what it lacks is gone, deleted while
        the watch was down (told to ``on_deleted`` like a deletion watched, with its last state
        cached)."""
        listed = {e.uid for e in entries if e is not None}
        for uid, key in list(self._job_of.items()):
            if (scope is None or key[0] == scope) and uid not in listed:
                cached = self._by_job[key][uid]
                before_deletion = self._before_deletion.get(uid, cached)
                self._forget(uid, key)
                if self.on_deleted is not None:
                    self.on_deleted(key, cached, before_deletion)
                self.on_change(key)
        for entry in entries:
            if entry is not None:
                self._store("ADDED", entry)

    # ----- list and watch ----------------------------------------------------------------------
    def _path(self, scope: str | None, query: dict[str, str]) -> str:
        where = (
            f"/api/v1/namespaces/{scope}/{self.resource}" if scope else f"/api/v1/{self.resource}"
        )
        return f"{where}?{urllib.parse.urlencode({'labelSelector': self.label, **query})}"

    async def run(self) -> None:
        """List and watch every scope until cancelled."""
        await self.listwatch.run()
