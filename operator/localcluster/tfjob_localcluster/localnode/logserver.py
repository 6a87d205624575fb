"""The node's log endpoint, in the kubelet's shape, so that `kubectl logs` works.

The API server proxies `kubectl logs` to `https://<node InternalIP>:<kubeletEndpoint port>/
containerLogs/<namespace>/<pod>/<container>`; this serves exactly that path from the log files
the pod runner writes (follow, tailLines and limitBytes supported).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

from tfjob_localcluster.pki import CertificateAuthority

if TYPE_CHECKING:
    from .agent import LocalNodeAgent

log = logging.getLogger(__name__)


class LogServer:
    def __init__(self, agent: LocalNodeAgent) -> None:
        self.agent = agent
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def find(self, namespace: str, pod: str, container: str) -> tuple[Path, object] | None:
        with self.agent.lock:
            for runner in self.agent.runners.values():
                if runner.namespace == namespace and runner.pod_name == pod:
                    return runner.log_path(container), runner
        return None

    def start(self) -> None:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

            def finish(self) -> None:
                """Close only after the client has read everything and closed its side:
                closing with unread bytes (a TLS alert, say) would reset the connection and
                could drop the end of a long log on its way to the API server."""
                super().finish()
                with contextlib.suppress(OSError, ssl.SSLError):
                    self.connection.settimeout(5)
                    while self.connection.recv(4096):
                        pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if url.path == "/healthz":
                    self._reply(200, b"ok")
                    return
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self._reply(404, b"not found")
                    return
                found = server_self.find(parts[1], parts[2], parts[3])
                if found is None or not found[0].exists():
                    self._reply(404, f"no logs for {'/'.join(parts[1:])}".encode())
                    return
                query = parse_qs(url.query)
                self._stream(found, query)

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, found: tuple[Path, object], query: dict[str, list[str]]) -> None:
                path, runner = found
                data = path.read_bytes()
                if "tailLines" in query:
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-int(query["tailLines"][0]) :])
                if "limitBytes" in query:
                    data = data[: int(query["limitBytes"][0])]
                if query.get("follow") != ["true"]:
                    self._reply(200, data)
                    return
                # Following: the body ends when the connection does.
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                offset = path.stat().st_size
                while runner.is_alive():  # type: ignore[attr-defined]
                    time.sleep(0.2)
                    size = path.stat().st_size
                    if size > offset:
                        with path.open("rb") as handle:
                            handle.seek(offset)
                            self.wfile.write(handle.read(size - offset))
                            self.wfile.flush()
                        offset = size

        directory = Path(tempfile.mkdtemp(prefix="tfjob-node-tls-", dir=self.agent.state_dir))
        authority = CertificateAuthority(directory, "tfjob-local-node-ca")
        pair = authority.issue(
            "serving",
            self.agent.node_name,
            server_hosts=(self.agent.node_address, self.agent.node_name),
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pair.cert, pair.key)
        self.server = ThreadingHTTPServer((self.agent.node_address, 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True, name="logs").start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
