"""A small client of the Juniper SSR (128T) REST and GraphQL API, for health checks from a step.

`POST /api/v1/login` trades a username and password for a bearer token; `GET /api/v1/version`
is the documented simple authenticated call, absent from older SSR API indexes, where
`GET /api/v1/system` (`softwareVersion`) stands in: the version is information, never a
failure. `POST /api/v1/graphql` answers the two queries that 128technology/stage_check uses for
process and device-interface state, and `GET /api/v1/config/getJSON?source=running` is the
running configuration (camelCase JSON: `deviceInterface`, `pciAddress`; the data model's
kebab-case names are read too), which tells which device-interface drives which VF or kernel
interface. Reading it takes a user with the `config-read` capability.

Every failure becomes one of our errors naming the pod. `SsrUnavailable` marks what a router
that is still starting answers (no connection, 5xx, 429, GraphQL errors), so that the caller
can wait on it; a refused login, a TLS failure or a malformed answer is final. The password
travels in one request body and nowhere else: not in errors, logs, or reprs, and never across
a redirect: the client follows none, as a 307 would resend the login body to another host.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

from .errors import ApiError, Forbidden, NotFound
from .log import Log

LOGIN = "/api/v1/login"
VERSION = "/api/v1/version"
SYSTEM = "/api/v1/system"
GRAPHQL = "/api/v1/graphql"
RUNNING_CONFIG = "/api/v1/config/getJSON"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""  # where they came from, for messages: "Secret cssr/cssr-ssr-credentials"


@dataclass(frozen=True)
class Process:
    node: str
    name: str
    status: str


@dataclass(frozen=True)
class DeviceInterface:
    """A device-interface's state, as GraphQL reports it (OPER_UP, OPER_DOWN, OPER_UNKNOWN; ADMIN_UP, ADMIN_DOWN)."""

    node: str
    name: str
    operational: str
    admin: str


@dataclass(frozen=True)
class ConfiguredInterface:
    """A device-interface of the running configuration, and what it binds: a PCI address (DPDK) or a kernel
    interface (`type host`, by `target-interface`)."""

    node: str
    name: str
    pci_address: str = ""
    target_interface: str = ""


class SsrUnavailable(ApiError):
    """The API is not answering usefully yet; `reason` is the short form for progress lines."""

    def __init__(self, message: str, *, reason: str, status: int = 0) -> None:
        super().__init__(message, status=status)
        self.reason = reason


class LoginRejected(Forbidden):
    pass


def base_url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _graphql_routers(router: str, node_fields: str) -> str:
    # The shapes of stage_check's TestProcessStates and TestDeviceState queries.
    selector = f"(name: {json.dumps(router)})" if router else ""
    return "{ allRouters" + selector + " { edges { node { name nodes { edges { node { name " + node_fields + (
        " } } } } } } }")


PROCESSES_QUERY = "state { processes { name processName status primary leaderStatus } }"
INTERFACES_QUERY = ("deviceInterfaces { edges { node { name state { operationalStatus adminStatus "
                    "redundancyStatus } forwarding } } }")


class SsrApi:
    """One router's API at `url`; `pod` names it in every message. Use as a context manager."""

    def __init__(self, url: str, *, pod: str, verify: bool | str = True, timeout: float = 15.0,
                 log: Log | None = None) -> None:
        self.url = url.rstrip("/")
        self.pod = pod
        self.log = log
        self.verify = verify
        self.timeout = (min(5.0, timeout), timeout)
        self.session = requests.Session()
        # Pod IPs are reached directly, with exactly the verification asked for: no proxy, CA bundle or
        # .netrc from the environment (requests lets REQUESTS_CA_BUNDLE override verify=False).
        self.session.trust_env = False
        self.session.verify = verify
        self.token = ""

    def __enter__(self) -> SsrApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # -- calls ----------------------------------------------------------------------------

    def login(self, credentials: Credentials) -> None:
        what = f"log in to the SSR API of {self.pod} as {credentials.username}"
        try:
            data = self._call("POST", LOGIN, what=what, authorized=False,
                              body={"username": credentials.username, "password": credentials.password})
        except Forbidden as e:
            source = f" in {credentials.source}" if credentials.source else ""
            raise LoginRejected(f"could not {what}: the router answered {e.status} (wrong username or password); "
                                f"check the username and password{source}", status=e.status) from None
        token = data.get("token") if isinstance(data, dict) else None
        if not token:
            raise ApiError(f"could not {what}: the login answer has no token; is {self.url} an SSR?")
        self.token = str(token)

    def version(self) -> str:
        """The SSR software version, or "" when neither endpoint has it: it is information, not a check."""
        what = f"read the SSR version of {self.pod}"
        for path, key in ((VERSION, "version"), (SYSTEM, "softwareVersion")):
            try:
                data = self._call("GET", path, what=what)
            except NotFound:
                continue
            found = data.strip()[:80] if isinstance(data, str) else _find_key(data, key)
            if found:
                return found
        return ""

    def processes(self, router: str = "") -> list[Process]:
        data = self.graphql(_graphql_routers(router, PROCESSES_QUERY), what=f"read the processes of {self.pod}")
        return [Process(node=node, name=str(p.get("name") or p.get("processName") or "?"),
                        status=str(p.get("status") or "UNKNOWN"))
                for node, fields in _nodes(data)
                for p in ((fields.get("state") or {}).get("processes") or [])]

    def device_interfaces(self, router: str = "") -> list[DeviceInterface]:
        data = self.graphql(_graphql_routers(router, INTERFACES_QUERY),
                            what=f"read the device interfaces of {self.pod}")
        found = []
        for node, fields in _nodes(data):
            for edge in ((fields.get("deviceInterfaces") or {}).get("edges") or []):
                interface = edge.get("node") or {}
                state = interface.get("state") or {}
                found.append(DeviceInterface(node=node, name=str(interface.get("name") or "?"),
                                             operational=str(state.get("operationalStatus") or "UNKNOWN"),
                                             admin=str(state.get("adminStatus") or "")))
        return found

    def configured_interfaces(self, router: str = "") -> list[ConfiguredInterface]:
        """The device-interfaces of the running configuration, with what each binds."""
        what = f"read the running configuration of {self.pod}"
        try:
            data = self._call("GET", RUNNING_CONFIG, query={"source": "running"}, what=what)
        except Forbidden as e:
            raise Forbidden(f"could not {what}: the router answered {e.status}; the SSR user of the smoke test needs "
                            "a role with the config-read capability (see docs/tasks/cssr-smoke-test.md)",
                            status=e.status) from None
        return configured_interfaces(data, router)

    def graphql(self, query: str, *, what: str) -> dict[str, Any]:
        data = self._call("POST", GRAPHQL, body={"query": query}, what=what)
        if not isinstance(data, dict):
            raise ApiError(f"could not {what}: the GraphQL answer is not an object")
        errors = data.get("errors") or []
        if errors:
            # A starting router answers with partial data and errors such as "Timeout has occurred".
            message = str((errors[0] or {}).get("message") or errors[0])[:200]
            raise SsrUnavailable(f"could not {what}: GraphQL answered {message!r}",
                                 reason=f"GraphQL: {message}", status=200)
        result: dict[str, Any] = data.get("data") or {}
        return result

    # -- transport ------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, what: str, body: Any = None,
              query: dict[str, str] | None = None, authorized: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        if authorized:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with warnings.catch_warnings():
                if self.verify is False:  # the caller chose this and logs it once; no warning per request
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                response = self.session.request(method, self.url + path, json=body, params=query,
                                                headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.SSLError as e:
            raise ApiError(f"could not {what}: TLS verification of {self.url} failed ({_reason(e)}); the SSR's "
                           "certificate is self-signed by default: set tls-verify to false, or to the path of "
                           "the CA bundle that signed it") from None
        except (requests.ConnectionError, requests.Timeout) as e:
            reason = _reason(e)
            raise SsrUnavailable(f"could not {what}: {self.url} is not answering ({reason})",
                                 reason=f"API not answering: {reason}") from None
        except requests.RequestException as e:
            raise ApiError(f"could not {what}: {type(e).__name__}: {_reason(e)}") from None
        with response:
            status = response.status_code
            text = response.text
        if self.log:  # method, path and status only: a body may hold the password or the token
            self.log.debug(f"{method} {self.url}{path} -> {status}")
        if response.is_redirect:
            # Following it would resend the password (a 307 keeps the body) or the token elsewhere.
            location = response.headers.get("Location", "?")
            raise ApiError(f"could not {what}: {self.url}{path} answered {status} with a redirect to {location[:120]}; "
                           "the SSR client follows no redirect, so that no credential leaves for another address: "
                           "set api-scheme and api-port to where the SSR API answers", status=status)
        if status >= 400:
            detail = f"{status} {response.reason or ''}".strip()
            if status == 429 or status >= 500:
                raise SsrUnavailable(f"could not {what}: {self.url} answered {detail}",
                                     reason=f"API answered {detail}", status=status)
            cls = {401: Forbidden, 403: Forbidden, 404: NotFound}.get(status, ApiError)
            raise cls(f"could not {what}: {self.url}{path} answered {detail}", status=status)
        try:
            return json.loads(text) if text.strip() else {}
        except ValueError:
            raise ApiError(f"could not {what}: {self.url}{path} answered with something that is not JSON",
                           status=status) from None


def _nodes(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for router_edge in ((data.get("allRouters") or {}).get("edges") or []):
        router = router_edge.get("node") or {}
        for node_edge in ((router.get("nodes") or {}).get("edges") or []):
            node = node_edge.get("node") or {}
            yield str(node.get("name") or "?"), node


def _pick(obj: dict[str, Any], *keys: str) -> Any:
    # getJSON spells leaves in camelCase (pciAddress); the data model and exports in kebab-case (pci-address).
    for key in keys:
        if key in obj:
            return obj[key]
    return None


def _list(obj: Any, *keys: str) -> list[dict[str, Any]]:
    value = _pick(obj, *keys) if isinstance(obj, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def configured_interfaces(config: Any, router: str = "") -> list[ConfiguredInterface]:
    """Every device-interface of every node of `router` (of every router when empty) in a running configuration."""
    authority = _pick(config, "authority") if isinstance(config, dict) else None
    found = []
    for each in _list(authority, "router"):
        if router and each.get("name") != router:
            continue
        for node in _list(each, "node"):
            for interface in _list(node, "deviceInterface", "device-interface"):
                found.append(ConfiguredInterface(
                    node=str(node.get("name") or "?"), name=str(interface.get("name") or "?"),
                    pci_address=str(_pick(interface, "pciAddress", "pci-address") or "").lower(),
                    target_interface=str(_pick(interface, "targetInterface", "target-interface") or "")))
    return found


def pci_addresses(config: Any, router: str = "") -> dict[str, str]:
    """PCI address -> device-interface name for every node of `router` (every router when empty)."""
    return {i.pci_address: i.name for i in configured_interfaces(config, router) if i.pci_address}


def _find_key(data: Any, key: str) -> str:
    """The first string under `key` in a JSON answer (an object, or a list of per-node objects)."""
    if isinstance(data, dict):
        if isinstance(data.get(key), str):
            return str(data[key])
        children = list(data.values())
    elif isinstance(data, list):
        children = data
    else:
        return ""
    return next((found for child in children if (found := _find_key(child, key))), "")


def _reason(error: BaseException) -> str:
    """The innermost useful part of a requests error, e.g. "certificate verify failed: self-signed certificate"."""
    text = str(error)
    for pattern in (r"certificate verify failed: ([^(')]+)", r"\] ([^(')]+?) \(_ssl", r"Errno -?\d+\] ([^)'\"]+)",
                    r"(Read timed out)", r"(Connection refused)", r"(timed out)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip().rstrip(".")
    return text[:160]
