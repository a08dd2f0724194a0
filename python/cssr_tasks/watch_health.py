"""The pool watcher's probes: `/healthz` (alive and recent) and `/readyz` (pools and nodes listed)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Probed(Protocol):
    def alive(self) -> bool: ...

    def ready(self) -> bool: ...


class Health:
    """`/healthz`: the loop and both watches are alive and recent. `/readyz`: pools and nodes listed."""

    def __init__(self, watcher: Probed, port: int, host: str = "") -> None:
        checks = {"/healthz": watcher.alive, "/readyz": watcher.ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = checks.get(self.path.split("?")[0])
                ok = check() if check else False
                body = b"ok\n" if ok else (b"not found\n" if check is None else b"unhealthy\n")
                self.send_response(200 if ok else 404 if check is None else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: keep quiet
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> Health:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
