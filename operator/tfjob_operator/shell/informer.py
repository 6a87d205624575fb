"""The cache of one kind of the operator's children: list once, then watch, keyed by job.

kopf handles every watch event through its full machinery (loggers, cause detection, handler
selection, a diff base): about a millisecond per event, which made it the operator's largest
cost when a thousand pods start together (three events each: created, bound, running). A pass
needs only a small observation of each pod and Service, so the operator watches them itself:
one JSON parse per event, the observation stored under its job, and a callback only when the
observation changed (a pod being bound to a node changes nothing a pass reads). Passes wait
until every informer has listed once, so no pass sees a half-listed world.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .kube import ApiError, Kube

log = logging.getLogger(__name__)

T = TypeVar("T")
JobKey = tuple[str, str]  # (namespace, job name)
WATCH_SECONDS = 300  # the server ends each watch after this; the informer resumes it
PAGE = 500
MAX_BACKOFF = 30.0


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


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
    ) -> None:
        self.kube = kube
        # Told of each object deleted while watched: its last state, and its state before its
        # deletion began (None if it was first seen going). E.g. a pod that the pod garbage
        # collector failed, then force-deleted with its lost node: Failed before it went.
        self.on_deleted = on_deleted
        self.metadata_only = metadata_only  # objects' metadata alone (Secrets: never their data)
        self.resource = resource
        self.label = label
        self.observe = observe
        self.on_change = on_change
        self.scopes, self.counts = watch_scopes(namespaces or [])
        self.synced = asyncio.Event()
        self._by_job: dict[JobKey, dict[str, T]] = {}
        self._job_of: dict[str, JobKey] = {}  # uid -> the job it is stored under
        # uid -> its state before its deletion began, for objects being deleted (a deletion
        # shows as one or more MODIFIED events with a deletionTimestamp, then DELETED).
        self._before_deletion: dict[str, T | None] = {}
        self._listed: set[str | None] = set()

    # ----- the cache ---------------------------------------------------------------------------
    def get(self, key: JobKey, default: Iterable[T] = ()) -> Iterable[T]:
        objects = self._by_job.get(key)
        return objects.values() if objects else default

    def __len__(self) -> int:
        return len(self._job_of)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) into the cache."""
        metadata = obj.get("metadata") or {}
        uid = metadata.get("uid")
        if not uid:
            return
        job_name = (metadata.get("labels") or {}).get(self.label)
        namespace = metadata.get("namespace", "")
        key = (namespace, job_name) if job_name and self.counts(namespace) else None
        before = self._job_of.get(uid)
        if before is not None and (kind == "DELETED" or before != key):
            cached = self._by_job[before][uid]
            before_deletion = self._before_deletion.get(uid, cached)
            self._forget(uid, before)
            if kind == "DELETED" and self.on_deleted is not None:
                self.on_deleted(before, self.observe(obj), before_deletion)
            self.on_change(before)
        if kind == "DELETED" or key is None:
            return
        if metadata.get("deletionTimestamp") and uid not in self._before_deletion:
            self._before_deletion[uid] = self._by_job.get(key, {}).get(uid)
        observation = self.observe(obj)
        objects = self._by_job.setdefault(key, {})
        if objects.get(uid) != observation:
            objects[uid] = observation
            self._job_of[uid] = key
            self.on_change(key)

    def _forget(self, uid: str, key: JobKey) -> None:
        self._job_of.pop(uid, None)
        self._before_deletion.pop(uid, None)
        objects = self._by_job.get(key)
        if objects is not None:
            objects.pop(uid, None)
            if not objects:
                del self._by_job[key]

    def _replace(self, scope: str | None, objects: list[dict[str, Any]]) -> None:
        """A fresh list of ``scope``: what it lacks is gone."""
        listed = {o["metadata"].get("uid") for o in objects}
        for uid, key in list(self._job_of.items()):
            if (scope is None or key[0] == scope) and uid not in listed:
                self._forget(uid, key)
                self.on_change(key)
        for obj in objects:
            self.apply("ADDED", obj)

    # ----- list and watch ----------------------------------------------------------------------
    def _path(self, scope: str | None, **query: str) -> str:
        where = (
            f"/api/v1/namespaces/{scope}/{self.resource}" if scope else f"/api/v1/{self.resource}"
        )
        return f"{where}?{urllib.parse.urlencode({'labelSelector': self.label, **query})}"

    async def run(self) -> None:
        """List and watch every scope until cancelled."""
        await asyncio.gather(*(self._follow(scope) for scope in self.scopes))

    async def _follow(self, scope: str | None) -> None:
        version: str | None = None
        delay = 1.0
        while True:
            try:
                if version is None:
                    version = await self._list(scope)
                version = await self._watch(scope, version)
                delay = 1.0
            except Gone:
                version = None
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a watch that fails is resumed, not lost
                log.warning(
                    "watching %s %s failed (%s); resuming in %.0f s",
                    self.resource,
                    f"in {scope}" if scope else "cluster-wide",
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF, delay * 2)

    async def _list(self, scope: str | None) -> str:
        objects: list[dict[str, Any]] = []
        token = ""
        while True:
            query = {"limit": str(PAGE), **({"continue": token} if token else {})}
            page = await self.kube.list_page(
                self._path(scope, **query),
                resource=self.resource,
                namespace=scope,
                metadata_only=self.metadata_only,
            )
            objects += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        self._replace(scope, objects)
        self._listed.add(scope)
        if self._listed >= set(self.scopes):
            self.synced.set()
        return str(page["metadata"]["resourceVersion"])

    async def _watch(self, scope: str | None, version: str) -> str:
        path = self._path(
            scope,
            watch="1",
            resourceVersion=version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(WATCH_SECONDS),
        )
        try:
            async for event in self.kube.watch(
                path,
                resource=self.resource,
                namespace=scope,
                timeout=WATCH_SECONDS + 30,
                metadata_only=self.metadata_only,
            ):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message"))
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self.apply(str(kind), obj)
        except ApiError as error:
            if error.status == 410:
                raise Gone(error.message) from error
            raise
        return version
