"""smoke-test's params: what Tekton passes as `PARAM_<NAME>` strings, parsed once and bounded.

Every number has bounds that keep the step sane (params.Reader refuses `nan`, `inf` and other
non-numbers): `interval` from 0.1 to 600 seconds (0 would be a busy loop against the API server
and the router), `timeout` at most a day, as it also sets the test pods' `activeDeadlineSeconds`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .k8s_names import name_problem
from .params import Reader
from .smoke_networks import NetworkRequest, network_request

DEFAULT_TRAFFIC_IMAGE = "docker.io/nicolaka/netshoot:v0.13"
CREDENTIALS_DIR = "/var/run/cssr/ssr-credentials"  # where tasks/cssr-smoke-test.yaml mounts the Secret
MIN_INTERVAL, MAX_INTERVAL = 0.1, 600.0
MAX_TIMEOUT = 86400
MAX_RTT_MS = 60000
# An SSR router's name, as the initializer's preferences schema gives it (128technology/docs:
# docs/initializer_preferences.md, router-name): letters, digits, - and _, at most 63 characters.
ROUTER_NAME = r"([a-zA-Z0-9]([a-zA-Z0-9\-_]){0,61})?[a-zA-Z0-9]"
# A network interface name: the kernel's dev_valid_name (net/core/dev.c) takes up to IFNAMSIZ-1 = 15
# bytes without /, : or whitespace; Multus' names (net1, ens6f0np0) are letters, digits, . _ -.
INTERFACE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"


@dataclass(frozen=True)
class Endpoint:
    """One end of the traffic test: the network (NAD) it attaches to, its address, its gateway."""

    network: str = ""
    ip: str = ""  # CIDR, e.g. 192.168.10.10/24; empty: the NAD's IPAM assigns one
    gateway: str = ""  # the router's address on that network; empty: the router pod's IP from network-status


@dataclass(frozen=True)
class Params:
    namespace: str = "cssr"
    statefulset: str = "cssr"
    networks: tuple[NetworkRequest, ...] = field(default=(), metadata={
        "help": "Multus JSON list of the networks to check; empty: what each pod requested"})
    api_scheme: str = "https"
    api_port: int = 443
    credentials_secret: str = "cssr-ssr-credentials"
    credentials_dir: str = field(default=CREDENTIALS_DIR, metadata={
        "help": "folder with the files username and password (where the Task mounts credentials-secret); "
                "without them, credentials-secret is read through the API"})
    tls_verify: bool | str = False
    router_name: str = ""
    traffic: bool = False
    traffic_image: str = DEFAULT_TRAFFIC_IMAGE
    traffic_client: Endpoint = Endpoint()
    traffic_server: Endpoint = Endpoint()
    traffic_count: int = 20
    max_packet_loss: int = 5
    max_rtt_ms: int = 100
    timeout: int = 300
    interval: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        params = cls(
            namespace=read.name("namespace", cls.namespace, hint="a namespace name such as cssr"),
            # A label, not a subdomain: its pods' host names and statefulset.kubernetes.io/pod-name labels hold it.
            statefulset=read.name("statefulset", cls.statefulset, hint="the StatefulSet name, cssr by default"),
            networks=_network_requests(read, read.json("networks", [], kind=list, hint=(
                'a Multus JSON list such as [{"name": "ens6f0np0-macvlan"}, {"name": "sriov-a", '
                '"interface": "net2"}]'))),
            api_scheme=read.choice("api-scheme", cls.api_scheme, ("https", "http")),
            api_port=read.integer("api-port", cls.api_port, minimum=1, maximum=65535),
            credentials_secret=read.name("credentials-secret", cls.credentials_secret, subdomain=True,
                                         hint="the name of a Secret with keys username and password"),
            credentials_dir=read.path("credentials-dir", CREDENTIALS_DIR),
            tls_verify=read.tls_verify(default="false"),
            router_name=read.string("router-name", "", pattern=ROUTER_NAME,
                                    hint="the router's name in its SSR configuration, such as cssr-router"),
            traffic=read.boolean("traffic", False),
            traffic_image=read.image("traffic-image", DEFAULT_TRAFFIC_IMAGE),
            traffic_client=_endpoint(read, "traffic-client"),
            traffic_server=_endpoint(read, "traffic-server"),
            traffic_count=read.integer("traffic-count", cls.traffic_count, minimum=1, maximum=1000),
            max_packet_loss=read.integer("max-packet-loss", cls.max_packet_loss, minimum=0, maximum=100),
            max_rtt_ms=read.integer("max-rtt-ms", cls.max_rtt_ms, minimum=1, maximum=MAX_RTT_MS),
            timeout=read.integer("timeout", cls.timeout, minimum=0, maximum=MAX_TIMEOUT),
            interval=read.seconds("interval", cls.interval, minimum=MIN_INTERVAL, maximum=MAX_INTERVAL),
        )
        if params.traffic_image.endswith(":latest"):
            read.fail("param traffic-image must be pinned by a version tag or a digest, not :latest")
        read.done()
        return params


def _network_requests(read: Reader, value: list[Any]) -> tuple[NetworkRequest, ...]:
    found = []
    for item in value:
        request = network_request(item)
        problem = _network_problem(request) if request is not None else "is not a network"
        if problem:
            read.fail(f"param networks has an element that {problem}: {json.dumps(item)[:80]}; "
                      'use {"name": "<nad>"} with optional "namespace" and "interface"')
        elif request is not None:
            found.append(request)
    return tuple(found)


def _network_problem(request: NetworkRequest) -> str:
    """A NetworkAttachmentDefinition's name is a custom resource's (a DNS-1123 subdomain), in a namespace."""
    problem = name_problem(request.name, subdomain=True)
    if problem:
        return f"names a network that {problem}"
    if request.namespace and name_problem(request.namespace):
        return f"names a namespace that {name_problem(request.namespace)}"
    if request.interface and not re.fullmatch(INTERFACE_NAME, request.interface):
        return "names an interface that is not up to 15 letters, digits, . _ or -"
    return ""


def _endpoint(read: Reader, name: str) -> Endpoint:
    value = read.json(name, {}, kind=dict, hint='e.g. {"network": "net-a", "ip": "192.168.10.10/24", '
                                                 '"gateway": "192.168.10.1"}')
    unknown = set(value) - {"network", "ip", "gateway"}
    if unknown:
        read.fail(f"param {name} has unknown keys {', '.join(sorted(unknown))}; use network, ip and gateway")
    endpoint = Endpoint(str(value.get("network") or ""), str(value.get("ip") or ""), str(value.get("gateway") or ""))
    if endpoint.network:
        namespace, _, nad = endpoint.network.rpartition("/")
        problem = _network_problem(NetworkRequest(nad, namespace))
        if problem or endpoint.network.startswith("/"):
            read.fail(f"param {name}: network {endpoint.network[:80]!r} {problem or 'has an empty namespace'}; "
                      "give a NetworkAttachmentDefinition as name or namespace/name")
    try:
        if endpoint.ip:
            ipaddress.ip_interface(endpoint.ip)
        if endpoint.gateway:
            ipaddress.ip_address(endpoint.gateway)
    except ValueError as e:
        read.fail(f"param {name}: {e}")
    return endpoint
