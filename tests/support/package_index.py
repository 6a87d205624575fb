"""A Python package index for tests: a wheel made from a module's source, and a server of the
simple repository API (PEP 503) with HTTP basic auth, in the standard library only, so the same
file serves on the test's loopback and, shipped in a ConfigMap, as a pod in the local cluster.

    python package_index.py DIRECTORY PORT      # serves DIRECTORY's *.whl under /simple/

Credentials come from INDEX_USERNAME and INDEX_PASSWORD (none: open). Every request is logged
on stdout as `GET <path> <status>`, so a test can say what pip asked for.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(
    directory: Path, name: str, version: str, module_source: str, requires: list[str]
) -> Path:
    """A pure-Python wheel of one module, `<name with underscores>.py`."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}.py": module_source.encode(),
        f"{info}/METADATA": "".join(
            [
                "Metadata-Version: 2.1\n",
                f"Name: {name}\n",
                f"Version: {version}\n",
                *(f"Requires-Dist: {requirement}\n" for requirement in requires),
            ]
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tfjob-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},sha256={_digest(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    wheel = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def make_handler(directory: Path, credentials: tuple[str, str] | None) -> type:
    expected = (
        "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        if credentials
        else None
    )

    logged = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            status = self._serve()
            with logged:  # print writes the line and its newline apart: threads interleave them
                print(f"GET {self.path} {status}", flush=True)

        def _serve(self) -> int:
            if expected and self.headers.get("Authorization") != expected:
                return self._reply(401, b"credentials needed\n", {"WWW-Authenticate": "Basic"})
            wheels = {path.name: path for path in directory.glob("*.whl")}
            parts = [part for part in self.path.split("?")[0].split("/") if part]
            if parts == ["simple"]:
                projects = sorted({_normalized(name.split("-")[0]) for name in wheels})
                links = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in projects)
                return self._reply(200, f"<html><body>{links}</body></html>".encode())
            if len(parts) == 2 and parts[0] == "simple":
                found = [n for n in wheels if _normalized(n.split("-")[0]) == parts[1]]
                if not found:
                    return self._reply(404, b"no such project\n")
                links = "".join(
                    f'<a href="/files/{html.escape(n)}#sha256='
                    f'{hashlib.sha256(wheels[n].read_bytes()).hexdigest()}">{html.escape(n)}</a>\n'
                    for n in sorted(found)
                )
                return self._reply(200, f"<html><body>{links}</body></html>".encode())
            if len(parts) == 2 and parts[0] == "files" and parts[1] in wheels:
                return self._reply(200, wheels[parts[1]].read_bytes(), content="application/zip")
            return self._reply(404, b"not found\n")

        def _reply(
            self, status: int, body: bytes, headers: dict[str, str] | None = None, content: str = ""
        ) -> int:
            self.send_response(status)
            self.send_header("Content-Type", content or "text/html")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
            return status

    return Handler


def serve(directory: Path, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    user, password = os.environ.get("INDEX_USERNAME"), os.environ.get("INDEX_PASSWORD")
    credentials = (user, password) if user and password else None
    return ThreadingHTTPServer((host, port), make_handler(directory, credentials))


if __name__ == "__main__":
    server = serve(Path(sys.argv[1]), int(sys.argv[2]))
    print(f"serving {sys.argv[1]} on port {server.server_address[1]}", flush=True)
    server.serve_forever()
