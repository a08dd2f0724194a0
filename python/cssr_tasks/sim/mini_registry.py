"""A small registry for `make demo`, where docker-registry is missing: the registry API v2 subset
that buildah, the tasks' registry client and oci.py use (manifests by tag and digest, blobs,
monolithic and chunked uploads), plain HTTP on 127.0.0.1, storage in a folder. Every write is
listed in `writes`.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .oci import OCI_MANIFEST, sha256

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class MiniRegistry:
    """Registry API v2 over plain HTTP on 127.0.0.1 (a free port), stored under `root`; stop() it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.writes: list[str] = []  # "PUT /v2/...", in order
        self._uploads: dict[str, bytearray] = {}
        self._lock = threading.Lock()
        for sub in ("blobs", "tags"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="mini-registry", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> MiniRegistry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _blob(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "-")

    def _tag(self, name: str, tag: str) -> Path:
        return self.root / "tags" / name.replace("/", "+") / tag


def _handler(registry: MiniRegistry) -> type[BaseHTTPRequestHandler]:
    routes = [
        (re.compile(r"/v2/?"), "base"),
        (re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)"), "manifest"),
        (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/?"), "start_upload"),
        (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)"), "upload"),
        (re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})"), "blob"),
    ]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo's output is the pipeline's
            pass

        def do_GET(self) -> None:
            self._route()

        do_HEAD = do_PUT = do_POST = do_PATCH = do_GET

        def _route(self) -> None:
            path, _, query = self.path.partition("?")
            self.query = {k: v for k, _, v in (p.partition("=") for p in query.split("&") if p)}
            body = self._body() if self.command in ("PUT", "POST", "PATCH") else b""
            for pattern, name in routes:
                match = pattern.fullmatch(path)
                if match:
                    if self.command in ("PUT", "POST", "PATCH"):
                        with registry._lock:
                            registry.writes.append(f"{self.command} {path}")
                    getattr(self, name)(body, **match.groupdict())
                    return
            self._error(404, "NAME_UNKNOWN", f"no route for {path}")

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return bytes(data)
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
            self._send(status, body, {"Content-Type": "application/json"})

        def base(self, body: bytes) -> None:
            self._send(200, b"{}", {"Content-Type": "application/json"})

        def manifest(self, body: bytes, name: str, ref: str) -> None:
            if self.command == "PUT":
                digest = sha256(body)
                registry._blob(digest).write_bytes(body)
                registry._blob(digest).with_suffix(".type").write_text(self.headers.get("Content-Type", OCI_MANIFEST))
                if not _DIGEST.fullmatch(ref):
                    registry._tag(name, ref).parent.mkdir(parents=True, exist_ok=True)
                    registry._tag(name, ref).write_text(digest)
                self._send(201, headers={"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest})
                return
            tag = registry._tag(name, ref)
            digest = ref if _DIGEST.fullmatch(ref) else (tag.read_text() if tag.is_file() else "")
            path = registry._blob(digest) if digest else None
            if path is None or not path.is_file():
                self._error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {name}:{ref}")
                return
            kind = path.with_suffix(".type").read_text() if path.with_suffix(".type").is_file() else OCI_MANIFEST
            self._send(200, path.read_bytes(), {"Content-Type": kind, "Docker-Content-Digest": digest})

        def blob(self, body: bytes, name: str, digest: str) -> None:
            path = registry._blob(digest)
            if not path.is_file():
                self._error(404, "BLOB_UNKNOWN", f"blob unknown: {digest}")
                return
            self._send(200, path.read_bytes(), {"Content-Type": "application/octet-stream",
                                                "Docker-Content-Digest": digest})

        def start_upload(self, body: bytes, name: str) -> None:
            upload = str(uuid.uuid4())
            with registry._lock:
                registry._uploads[upload] = bytearray()
            if "digest" in self.query:  # a monolithic upload in one POST
                self.upload(body, name, upload)
                return
            self._send(202, headers={"Location": f"/v2/{name}/blobs/uploads/{upload}", "Range": "0-0",
                                     "Docker-Upload-UUID": upload})

        def upload(self, body: bytes, name: str, upload: str) -> None:
            with registry._lock:
                data = registry._uploads.get(upload)
                if data is None:
                    self._error(404, "BLOB_UPLOAD_UNKNOWN", f"upload {upload} unknown")
                    return
                data += body
            if self.command != "PUT":
                self._send(202, headers={"Location": f"/v2/{name}/blobs/uploads/{upload}",
                                         "Range": f"0-{max(len(data) - 1, 0)}", "Docker-Upload-UUID": upload})
                return
            digest = urllib.parse.unquote(self.query.get("digest", ""))
            if sha256(bytes(data)) != digest:
                self._error(400, "DIGEST_INVALID", f"the upload's digest is {sha256(bytes(data))}, not {digest}")
                return
            registry._blob(digest).write_bytes(bytes(data))
            with registry._lock:
                registry._uploads.pop(upload, None)
            self._send(201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    return Handler
