"""The pool watcher's probes: `/healthz` (alive and recent) and `/readyz` (pools and nodes listed).

The same server answers `/metrics` (watch_metrics) when given an exposition: one port, one thread,
the probes and the scrape alike read-only and cheap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class Probed(Protocol):
    def alive(self) -> bool: ...

    def ready(self) -> bool: ...


class Health:
    """`/healthz`: the loop and both watches are alive and recent. `/readyz`: pools and nodes listed."""

    def __init__(self, watcher: Probed, port: int, host: str = "",
                 metrics: Callable[[], tuple[bytes, str]] | None = None) -> None:
        checks = {"/healthz": watcher.alive, "/readyz": watcher.ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if metrics is not None and self.path.split("?")[0] == "/metrics":
                    body, content_type = metrics()
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
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
