"""A Python package index for tests: a wheel made from a module's source, and a server of the
simple repository API (PEP 503) with HTTP basic auth, in the standard library only, so the same
file serves on the test's loopback and, shipped in a ConfigMap, as a pod in the local cluster.

    python package_index.py DIRECTORY PORT      # serves DIRECTORY's *.whl, *.tar.gz under /simple/

Credentials come from INDEX_USERNAME and INDEX_PASSWORD (none: open). Every request is logged
on stdout as `GET <path> <status>`, so a test can say what pip asked for.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import re
import sys
import tarfile
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


# A PEP 517 build backend in the standard library, shipped in each sdist build_sdist makes. Its
# wheel holds the package's module and, as SEEN, the command line of every process it could
# read while it built (and the SEEN of the build requirements it imports): what a package's
# build step, or anyone else on the machine, sees of the install.
SPY_BACKEND = """\
import base64, glob, hashlib, importlib, os, zipfile

NAME, VERSION, BUILD_REQUIRES = {name!r}, {version!r}, {build_requires!r}


def _seen():
    seen = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(os.path.join(proc, "cmdline"), "rb") as cmdline:
                seen.append(cmdline.read().replace(b"\\0", b" ").decode("utf-8", "replace"))
        except OSError:
            pass
    for requirement in BUILD_REQUIRES:
        seen += importlib.import_module(requirement.split("==")[0].replace("-", "_")).SEEN
    return seen


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    module = NAME.replace("-", "_")
    info = module + "-" + VERSION + ".dist-info"
    with open(module + ".py", "rb") as source:
        code = source.read() + ("\\nSEEN = " + repr(_seen()) + "\\n").encode()
    files = {{
        module + ".py": code,
        info + "/METADATA": ("Metadata-Version: 2.1\\nName: " + NAME + "\\nVersion: " + VERSION
                             + "\\n").encode(),
        info + "/WHEEL": b"Wheel-Version: 1.0\\nGenerator: tfjob-tests\\nRoot-Is-Purelib: true\\n"
                         b"Tag: py3-none-any\\n",
    }}
    record = "".join(
        p + ",sha256=" + _digest(d) + "," + str(len(d)) + "\\n" for p, d in files.items()
    )
    files[info + "/RECORD"] = (record + info + "/RECORD,,\\n").encode()
    name = module + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name
"""


def build_sdist(
    directory: Path, name: str, version: str, module_source: str, build_requires: list[str]
) -> Path:
    """A source distribution of one module that pip must build: its backend (SPY_BACKEND)
    needs ``build_requires`` from the index, which pip installs with a pip of its own first."""
    module = name.replace("-", "_")
    root = f"{module}-{version}"
    requires = ", ".join(f'"{requirement}"' for requirement in build_requires)
    files = {
        f"{root}/pyproject.toml": (
            f"[build-system]\nrequires = [{requires}]\n"
            'build-backend = "tfjob_spy_backend"\nbackend-path = ["."]\n'
        ),
        f"{root}/tfjob_spy_backend.py": SPY_BACKEND.format(
            name=name, version=version, build_requires=build_requires
        ),
        f"{root}/{module}.py": module_source,
        f"{root}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    sdist = directory / f"{root}.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for path, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(path)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return sdist


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
            wheels = {
                path.name: path
                for pattern in ("*.whl", "*.tar.gz")
                for path in directory.glob(pattern)
            }
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
                kind = "application/zip" if parts[1].endswith(".whl") else "application/gzip"
                return self._reply(200, wheels[parts[1]].read_bytes(), content=kind)
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
