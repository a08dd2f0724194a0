"""A fake Juniper SSR API for the smoke test and `make demo`, served over HTTPS by pytest-httpserver.

Response shapes are the documented ones (DOMAIN-FACTS.md 2.4): `{"token": ...}` from
`POST /api/v1/login`, Bearer-token calls after it, and GraphQL answers shaped like the fixtures
of 128technology/stage_check (allRouters -> nodes -> state.processes / deviceInterfaces, with
`errors` such as "Timeout has occurred" while a router starts). The running configuration
(`GET /api/v1/config/getJSON`) is camelCase JSON, as the REST API spells the data model
(`deviceInterface`, `pciAddress`, `targetInterface`; issue 13); it binds each device-interface to
a PCI address, built from the pod's PCIDEVICE variables as the cSSR does, or to the pod's kernel
interface. Older SSR API indexes lack `GET /api/v1/version`: `version_endpoint = False` answers
it 404, and `GET /api/v1/system` carries `softwareVersion` (issue 13, from the SSR REST docs).

pytest-httpserver's HTTPServer is a plain werkzeug server (it does not import pytest), so the
demo starts one the same way the tests do: `serve(folder, nets)`.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from .router import Net, pcidevice_env

PASSWORD = "Sw0rdfish-128T-s3cret"  # distinctive, so that a leak anywhere is found
USERNAME = "admin"
ROUTER = "cssr-router"
# The processes stage_check's fixtures list for a 5.x router.
PROCESSES = ["accessManager", "analyticsReporter", "applicationFrameworkManager", "conflux",
             "databaseQueryCoordinator", "dnsManager", "dynamicPeerUpdateManager", "highway", "nodeMonitor",
             "persistentDataManager", "redisServerManager", "routingManager", "secureCommunicationManager",
             "securityKeyManager", "snmpTrapAgent", "stateMonitor", "systemServicesCoordinator"]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate like the SSR's default one: self-signed; it names the loopback addresses the tests use."""
    cert, key = folder / "ssr.crt", folder / "ssr.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/O=128 Technology/CN=cssr-0",
                    "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2"],
                   check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class FakeSsr:
    """One router node's API; tests change its state between or during calls."""

    def __init__(self, server: HTTPServer, nets: list[Net], *, node: str = "cssr-0") -> None:
        self.server = server
        self.node = node
        self.router = ROUTER
        self.username, self.password = USERNAME, PASSWORD
        self.token = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.fake-session-token.sig"
        self.version = "6.3.0-107.r1"
        names = {net.interface: f"ge-0-{index + 1}" for index, net in enumerate(nets)}
        self.interfaces = {name: "OPER_UP" for name in names.values()}
        self.linux = {name: interface for interface, name in names.items()}
        # The cSSR binds device-interfaces to the VFs in PCIDEVICE_OPENSHIFT_IO_<RESOURCE>.
        env_addresses = {a for value in pcidevice_env(nets).values() for a in value.split(",")}
        self.pci = {names[n.interface]: n.pci for n in nets if n.pci in env_addresses}
        self.admin = dict.fromkeys(self.interfaces, "ADMIN_UP")  # a name missing here is ADMIN_UP
        self.processes = dict.fromkeys(PROCESSES, "RUNNING")
        self.config_read = True  # False: the user's role lacks the config-read capability (403 on getJSON)
        self.version_endpoint = True  # False: an older API index without /api/v1/version
        self.system_endpoint = True  # False: no /api/v1/system either
        self.unreported: set[str] = set()  # configured device-interfaces missing from the GraphQL state
        self.redirect_to = ""  # an origin: every request answers 307 to the same path there
        self.unavailable = 0  # answer 503 to this many requests; -1: to every request
        self.graphql_errors = 0  # answer this many GraphQL queries with a timeout error
        self.warmup: list[dict[str, str]] = []  # interface states for the first device-interface queries
        self.camel_case_config = True  # False: the data model's kebab-case names, as exports spell them
        self.logins: list[dict[str, Any]] = []
        self.queries: list[str] = []
        self.requests: list[str] = []  # "METHOD /path?query", in order
        server.expect_request(re.compile(r"/.*")).respond_with_handler(self.handle)

    @property
    def port(self) -> int:
        return int(self.server.port)

    def handle(self, request: Request) -> Response:
        self.requests.append(f"{request.method} {request.full_path.rstrip('?')}")
        if self.redirect_to:
            return Response("", status=307, headers={"Location": self.redirect_to + request.full_path.rstrip("?")})
        if self.unavailable:
            self.unavailable -= 1 if self.unavailable > 0 else 0
            return Response("<html><body>503 Service Temporarily Unavailable</body></html>", status=503,
                            content_type="text/html")
        if request.path == "/api/v1/login" and request.method == "POST":
            body = request.get_json()
            self.logins.append(body)
            if body.get("username") != self.username or body.get("password") != self.password:
                return _json({"error": {"code": 401, "message": "Invalid username or password"}}, 401)
            return _json({"token": self.token})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json({"error": {"code": 401, "message": "Unauthorized"}}, 401)
        if request.path == "/api/v1/version" and request.method == "GET" and self.version_endpoint:
            return _json({"version": self.version})
        if request.path == "/api/v1/system" and request.method == "GET" and self.system_endpoint:
            return _json({"softwareVersion": self.version})
        if request.path == "/api/v1/graphql" and request.method == "POST":
            return self.graphql(request.get_json()["query"])
        if request.path == "/api/v1/config/getJSON" and request.args.get("source") == "running":
            if not self.config_read:
                return _json({"error": {"code": 403, "message": "Forbidden"}}, 403)
            return _json(self.running_config())
        return _json({"error": {"code": 404, "message": f"{request.path} not found"}}, 404)

    def graphql(self, query: str) -> Response:
        self.queries.append(query)
        if self.graphql_errors:
            self.graphql_errors -= 1
            return _json({"errors": [{"message": "Timeout has occurred", "locations": [{"line": 1, "column": 60}],
                                      "path": ["allRouters", "edges", 0, "node", "nodes", "edges", 0, "node",
                                               "state"]}],
                          "data": {"allRouters": {"edges": [{"node": {"name": self.router, "nodes": {"edges": [
                              {"node": {"name": self.node, "state": None}}]}}}]}}})
        wanted = re.search(r'allRouters\(name: "([^"]*)"\)', query)
        if wanted and wanted[1] != self.router:
            return _json({"data": {"allRouters": {"edges": []}}})
        if "processes" in query:
            node: dict[str, Any] = {"name": self.node, "state": {"processes": [
                {"name": n, "processName": n, "status": s, "primary": False, "leaderStatus": "NONE"}
                for n, s in self.processes.items()]}}
        else:
            states = {n: s for n, s in {**self.interfaces, **(self.warmup.pop(0) if self.warmup else {})}.items()
                      if n not in self.unreported}
            node = {"name": self.node, "deviceInterfaces": {"edges": [
                {"node": {"name": n, "forwarding": True, "state": {
                    "operationalStatus": s, "adminStatus": self.admin.get(n, "ADMIN_UP"),
                    "redundancyStatus": "NON_REDUNDANT"}}}
                for n, s in states.items()]}}
        return _json({"data": {"allRouters": {"edges": [{"node": {"name": self.router, "nodes": {"edges": [
            {"node": node}]}}}]}}})

    def running_config(self) -> dict[str, Any]:
        # camelCase as getJSON answers (pciAddress), or the data model's kebab-case (pci-address).
        keys = ("deviceInterface", "pciAddress", "targetInterface") if self.camel_case_config else (
            "device-interface", "pci-address", "target-interface")
        device, pci, target = keys
        interfaces = [{"name": n, "type": "ethernet", pci: self.pci[n]} if n in self.pci else
                      {"name": n, "type": "host", target: self.linux.get(n, n)} for n in self.interfaces]
        return {"authority": {"name": "Authority128", "router": [
            {"name": self.router, "node": [{"name": self.node, "role": "combo", device: interfaces}]}]}}


def serve(folder: Path, nets: list[Net], *, host: str = "127.0.0.1") -> FakeSsr:
    """A FakeSsr over HTTPS on `host` at a free port, with a self-signed certificate made in `folder` (openssl).

    Stop it with `ssr.server.stop()`.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines in the demo's output
    folder.mkdir(parents=True, exist_ok=True)
    server = HTTPServer(host=host, port=0, ssl_context=server_context(*self_signed_certificate(folder)))
    server.start()
    return FakeSsr(server, nets)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
