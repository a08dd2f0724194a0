"""smoke-test's params: what Tekton passes as `PARAM_<NAME>` strings, parsed once and bounded.

Every number has bounds that keep the step sane (params.Reader refuses `nan`, `inf` and other
non-numbers): `interval` from 0.1 to 600 seconds (0 would be a busy loop against the API server
and the router), `timeout` at most a day, as it also sets the test pods' `activeDeadlineSeconds`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .params import Reader
from .smoke_networks import NetworkRequest, network_request

DEFAULT_TRAFFIC_IMAGE = "docker.io/nicolaka/netshoot:v0.13"
CREDENTIALS_DIR = "/var/run/cssr/ssr-credentials"  # where tasks/cssr-smoke-test.yaml mounts the Secret
MIN_INTERVAL, MAX_INTERVAL = 0.1, 600.0
MAX_TIMEOUT = 86400
MAX_RTT_MS = 60000


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
        dns = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
        params = cls(
            namespace=read.string("namespace", cls.namespace, pattern=dns, hint="a namespace name such as cssr"),
            statefulset=read.string("statefulset", cls.statefulset, pattern=dns,
                                    hint="the StatefulSet name, cssr by default"),
            networks=_network_requests(read, read.json("networks", [], kind=list, hint=(
                'a Multus JSON list such as [{"name": "ens6f0np0-macvlan"}, {"name": "sriov-a", '
                '"interface": "net2"}]'))),
            api_scheme=read.choice("api-scheme", cls.api_scheme, ("https", "http")),
            api_port=read.integer("api-port", cls.api_port, minimum=1, maximum=65535),
            credentials_secret=read.string("credentials-secret", cls.credentials_secret, pattern=dns,
                                           hint="the name of a Secret with keys username and password"),
            credentials_dir=read.string("credentials-dir", CREDENTIALS_DIR),
            tls_verify=read.tls_verify(default="false"),
            router_name=read.string("router-name", ""),
            traffic=read.boolean("traffic", False),
            traffic_image=read.string("traffic-image", DEFAULT_TRAFFIC_IMAGE),
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
        if request is None:
            read.fail(f"param networks has an element that is not a network: {json.dumps(item)[:80]}; "
                      'use {"name": "<nad>"} with optional "namespace" and "interface"')
        else:
            found.append(request)
    return tuple(found)


def _endpoint(read: Reader, name: str) -> Endpoint:
    value = read.json(name, {}, kind=dict, hint='e.g. {"network": "net-a", "ip": "192.168.10.10/24", '
                                                 '"gateway": "192.168.10.1"}')
    unknown = set(value) - {"network", "ip", "gateway"}
    if unknown:
        read.fail(f"param {name} has unknown keys {', '.join(sorted(unknown))}; use network, ip and gateway")
    endpoint = Endpoint(str(value.get("network") or ""), str(value.get("ip") or ""), str(value.get("gateway") or ""))
    try:
        if endpoint.ip:
            ipaddress.ip_interface(endpoint.ip)
        if endpoint.gateway:
            ipaddress.ip_address(endpoint.gateway)
    except ValueError as e:
        read.fail(f"param {name}: {e}")
    return endpoint
