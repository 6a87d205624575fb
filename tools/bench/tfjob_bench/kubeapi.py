"""A bare asyncio client for the benchmark: raw JSON over aiohttp, one identity per kubeconfig.

No models, no (de)serialisation beyond ``json``: the driver and the limit must cost the machine
as little as possible, so that what is measured is the API server and the contestant.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml


class ApiError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class Identity:
    """Where a kubeconfig written by LocalCluster points, and as whom."""

    server: str
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Identity:
        document = yaml.safe_load(path.read_text())
        cluster = document["clusters"][0]["cluster"]
        user = document["users"][0]["user"]
        return cls(
            server=cluster["server"],
            ca=Path(cluster["certificate-authority"]),
            cert=Path(user["client-certificate"]),
            key=Path(user["client-key"]),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


class RawApi:
    """``async with RawApi(kubeconfig, concurrency=16) as api: await api.create(path, body)``."""

    def __init__(self, kubeconfig: Path, *, connections: int = 100) -> None:
        self.identity = Identity.from_kubeconfig(kubeconfig)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RawApi:
        connector = aiohttp.TCPConnector(
            limit=self._connections, ssl=self.identity.ssl_context(), force_close=False
        )
        self._session = aiohttp.ClientSession(
            base_url=self.identity.server,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use RawApi as an async context manager"
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        """One request; raises ApiError on an error status not listed in ``ok``."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(
            method, path, data=data, params=params, headers=headers
        ) as response:
            raw = await response.read()
            if response.status >= 400 and response.status not in ok:
                raise ApiError(response.status, method, path, raw.decode(errors="replace"))
            return response.status, (json.loads(raw) if raw else None)

    async def create(self, path: str, body: dict[str, Any], *, ok: tuple[int, ...] = ()) -> Any:
        return (await self.request("POST", path, body, ok=ok))[1]

    async def get(self, path: str, *, params: dict[str, str] | None = None) -> Any:
        return (await self.request("GET", path, params=params))[1]

    async def exists(self, path: str) -> bool:
        status, _ = await self.request("GET", path, ok=(404,))
        return status != 404

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        return (
            await self.request("PATCH", path, body, content_type="application/merge-patch+json")
        )[1]

    async def delete(self, path: str) -> int:
        status, _ = await self.request("DELETE", path, ok=(404,))
        return status

    async def list_all(
        self, path: str, params: dict[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every item of a collection (paged), and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        query = {**(params or {}), "limit": "500"}
        while True:
            page = await self.get(path, params=query)
            items.extend(page.get("items") or [])
            token = page["metadata"].get("continue")
            if not token:
                return items, page["metadata"]["resourceVersion"]
            query = {**query, "continue": token}

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: dict[str, str] | None = None,
        *,
        opened: asyncio.Event | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events from ``resource_version``; ``opened`` is set once headers arrive."""
        query = {
            **(params or {}),
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "3600",
        }
        async with self.session.get(path, params=query) as response:
            if response.status >= 400:
                raise ApiError(response.status, "WATCH", path, await response.text())
            if opened is not None:
                opened.set()
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)


def namespaced(
    namespace: str, plural: str, *, group: str = "", version: str = "v1", name: str = ""
) -> str:
    """The REST path of a namespaced collection (or, with ``name``, of one object)."""
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path
