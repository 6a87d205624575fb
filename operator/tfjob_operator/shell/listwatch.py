"""The one list-then-watch loop: every resource the operator follows goes through it.

The jobs, their pods, Services and ConfigMaps, and the peering object are each listed (in
pages), then watched from the list's resourceVersion. A watch the server ends is resumed from
the last version seen; one whose version is too old (410 Gone) lists again, and the fresh list
replaces what was known, so an object deleted meanwhile is forgotten; any other failure is
retried with backoff. kopf handles every watch event through its full machinery (about a
millisecond each); here an event is one JSON parse and a callback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from .kube import ApiError, Kube

log = logging.getLogger(__name__)

WATCH_SECONDS = 300  # the server ends each watch after this; the loop resumes it
PAGE = 500
MAX_BACKOFF = 30.0

# Where to list or watch: (scope, query) -> path with the query (None: every namespace).
PathOf = Callable[[str | None, dict[str, str]], str]


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


@dataclasses.dataclass(eq=False)
class ListWatch:
    """Lists and watches one resource in each scope, telling ``on_list(scope, objects)`` each
    fresh list and ``on_event(type, object)`` each watch event (ADDED, MODIFIED, DELETED)."""

    kube: Kube
    resource: str
    path: PathOf
    scopes: list[str | None]
    on_list: Callable[[str | None, list[Any]], None]
    on_event: Callable[[str, dict[str, Any]], None]
    metadata_only: bool = False  # objects' metadata alone (Secrets: never their data)
    # What a list keeps of each object, as each page arrives (None: the object whole): a list
    # of ten thousand pods is then never held whole, only what the cache keeps of them.
    keep: Callable[[dict[str, Any]], Any] | None = None
    bookmarks: bool = True
    # Every scope listed once.
    synced: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, init=False)
    _listed: set[str | None] = dataclasses.field(default_factory=set, init=False)

    async def run(self) -> None:
        """List and watch every scope until cancelled."""
        await asyncio.gather(*(self._follow(scope) for scope in self.scopes))

    async def list_all(self, scope: str | None) -> tuple[list[Any], str]:
        """Every object of ``scope`` (what ``keep`` keeps of it), page by page, and the list's
        resourceVersion."""
        objects: list[Any] = []
        token = ""
        while True:
            query = {"limit": str(PAGE), **({"continue": token} if token else {})}
            page = await self.kube.list_page(
                self.path(scope, query),
                resource=self.resource,
                namespace=scope,
                metadata_only=self.metadata_only,
            )
            items = page.pop("items", None) or []
            objects += items if self.keep is None else map(self.keep, items)
            del items
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return objects, str((page.get("metadata") or {}).get("resourceVersion") or "")

    async def _follow(self, scope: str | None) -> None:
        version: str | None = None
        delay = 1.0
        while True:
            try:
                if version is None:
                    version = await self._list(scope)
                version = await self._watch(scope, version)
                delay = 1.0
            except Gone as gone:
                log.info(
                    "watching %s %s: 410 Gone (%s); listing again",
                    self.resource,
                    f"in {scope}" if scope else "cluster-wide",
                    gone,
                )
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
        objects, version = await self.list_all(scope)
        self.on_list(scope, objects)
        self._listed.add(scope)
        if self._listed >= set(self.scopes):
            self.synced.set()
        return version

    async def _watch(self, scope: str | None, version: str) -> str:
        query = {"watch": "1", "resourceVersion": version, "timeoutSeconds": str(WATCH_SECONDS)}
        if self.bookmarks:
            query["allowWatchBookmarks"] = "true"
        try:
            async for event in self.kube.watch(
                self.path(scope, query),
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
                    self.on_event(str(kind), obj)
        except ApiError as error:
            if error.status == 410:
                raise Gone(error.message) from error
            raise
        return version
