"""Smoke test of the router's data path: a green rollout does not prove that packets flow.

For every pod of the cSSR StatefulSet: the pod is Ready; Multus' `network-status` lists every
requested network with its interface, and a PCI address for SR-IOV attachments; the router,
through its REST/GraphQL API on the pod IP, logs in, reports its version, has every process
RUNNING and every device interface OPER_UP, and drives the very VFs the SR-IOV device plugin
gave the pod. With `traffic`, two throwaway pods on two of the router's networks ping each
other through the router, and loss and round-trip time are checked against thresholds.

The device plugin's `PCIDEVICE_OPENSHIFT_IO_<RESOURCE>` variable exists only in the running
container (the pod spec does not hold it), and reading it would take `pods/exec` into a
privileged pod. The cSSR binds its device-interfaces by that variable's PCI addresses, so the
step compares the router's running configuration (`device-interface pci-address`) with the
addresses Multus recorded: the same question, answered with read-only rights.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import tenacity

from . import selectors
from .cluster import Cluster, resource_path
from .errors import ConfigError, CssrError, NotFound, WaitTimeout
from .log import Log
from .params import Reader
from .ssr_api import Credentials, DeviceInterface, Process, SsrApi, SsrUnavailable, base_url

NEEDS_CLUSTER = True

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
NAD_API = "k8s.cni.cncf.io/v1"
DEFAULT_TRAFFIC_IMAGE = "docker.io/nicolaka/netshoot:v0.13"
CREDENTIALS_DIR = "/var/run/cssr/ssr-credentials"  # where tasks/cssr-smoke-test.yaml mounts the Secret

# Test pods carry these labels, so that a later run finds and removes what a killed run left.
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
ROLE_LABEL = "cssr-deploy/smoke-test-role"
TEST_POD_CONTAINER = "ping"

T = TypeVar("T")


class NetworkMismatch(CssrError):
    """A requested network is missing, on the wrong interface, or on a VF the router does not drive."""


class TrafficFailed(CssrError):
    """Packets did not cross the router well enough."""


# -- params ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkRequest:
    """One element of a Multus `k8s.v1.cni.cncf.io/networks` request."""

    name: str
    namespace: str = ""
    interface: str = ""

    def qualified(self, default_namespace: str) -> str:
        return f"{self.namespace or default_namespace}/{self.name}"


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
            max_rtt_ms=read.integer("max-rtt-ms", cls.max_rtt_ms, minimum=1),
            timeout=read.integer("timeout", cls.timeout, minimum=0),
            interval=_seconds(read, "interval", cls.interval),
        )
        if params.traffic_image.endswith(":latest"):
            read.fail("param traffic-image must be pinned by a version tag or a digest, not :latest")
        read.done()
        return params


def _network_requests(read: Reader, value: list[Any]) -> tuple[NetworkRequest, ...]:
    found = []
    for item in value:
        request = _network_request(item)
        if request is None:
            read.fail(f"param networks has an element that is not a network: {json.dumps(item)[:80]}; "
                      'use {"name": "<nad>"} with optional "namespace" and "interface"')
        else:
            found.append(request)
    return tuple(found)


def _network_request(item: Any) -> NetworkRequest | None:
    if isinstance(item, str):
        return parse_network_text(item)
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
        return NetworkRequest(item["name"], str(item.get("namespace") or ""), str(item.get("interface") or ""))
    return None


def parse_network_text(text: str) -> NetworkRequest | None:
    """Multus' short form: `name`, `namespace/name` or `namespace/name@interface`."""
    match = re.fullmatch(r"\s*(?:([^/@\s]+)/)?([^/@\s]+)(?:@(\S+))?\s*", text)
    return NetworkRequest(match[2], match[1] or "", match[3] or "") if match else None


def requested_networks(annotation: str | None) -> tuple[NetworkRequest, ...]:
    """The networks a pod asked for, from its `k8s.v1.cni.cncf.io/networks` annotation (JSON or short form)."""
    if not annotation or not annotation.strip():
        return ()
    try:
        value = json.loads(annotation)
    except ValueError:
        value = annotation.split(",")
    items = value if isinstance(value, list) else [value]
    return tuple(r for r in (_network_request(i) for i in items) if r is not None)


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


def _seconds(read: Reader, name: str, default: float) -> float:
    value = read.string(name, str(default)).strip()
    try:
        number = float(value)
    except ValueError:
        read.fail(f"param {name}={value!r} is not a number of seconds")
        return default
    if number < 0:
        read.fail(f"param {name}={value} is below the minimum 0")
    return number


@dataclass(frozen=True)
class Result:
    interfaces_up: int
    processes_running: int
    packet_loss: str  # percent, as ping reports it; empty when the traffic test is off
    rtt_ms: str  # average round-trip time; empty when the traffic test is off
    summary: str


# -- waiting --------------------------------------------------------------------------------


class Clock:
    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.timeout - self.elapsed()


class NotYet(Exception):
    """The state we wait for is not reached: the message is the progress line, the rest makes the final error."""

    def __init__(self, progress: str, *, what: str, reason: str, hint: str) -> None:
        super().__init__(progress)
        self.what, self.reason, self.hint = what, reason, hint


def wait_until(check: Callable[[], T], *, clock: Clock, interval: float, log: Log) -> T:
    """Call `check` until it stops raising NotYet, every `interval` seconds, until the clock runs out."""

    def progress(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.info(f"{error}; {clock.elapsed():.0f}s of {clock.timeout}s")

    retry = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(NotYet),
        stop=lambda state: clock.remaining() <= 0,
        wait=lambda state: max(0.0, min(interval, clock.remaining())),
        before_sleep=progress,
        reraise=True,
    )
    try:
        return retry(check)
    except NotYet as e:
        raise WaitTimeout(f"could not see {e.what} within {clock.timeout}s: {e.reason}; {e.hint}") from None


# -- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """One secondary network of a pod, as Multus reports it."""

    network: str  # namespace/name
    interface: str
    ips: tuple[str, ...]
    pci_address: str  # empty unless device-info says pci
    resource: str  # the SR-IOV resource of its NAD, e.g. openshift.io/ens6f0np0; empty for others


@dataclass(frozen=True)
class Health:
    version: str
    processes: list[Process]
    interfaces: list[DeviceInterface]
    pci: dict[str, str]  # PCI address -> device-interface, from the running configuration


def run(params: Params, *, cluster: Cluster, log: Log) -> Result:
    clock = Clock(params.timeout)
    sts = cluster.get_or_none("apps/v1", "statefulsets", params.statefulset, params.namespace)
    if sts is None:
        raise NotFound(f"could not get StatefulSet {params.namespace}/{params.statefulset}: not found; run "
                       "apply-manifests first, or check the namespace and statefulset params", status=404)
    pods = wait_until(lambda: ready_pods(cluster, sts), clock=clock, interval=params.interval, log=log)
    credentials = load_credentials(params, cluster, log)
    if params.tls_verify is False:
        log.warn("tls-verify is false: the SSR API's certificate is not verified (SSRs ship a self-signed one)")
    resources = NadResources(cluster)
    up = running = 0
    router_attachments: list[Attachment] = []
    for pod in pods:
        name = pod["metadata"]["name"]
        wanted = params.networks or requested_networks(_annotations(pod).get(NETWORKS_ANNOTATION))
        if not wanted:
            log.warn(f"pod {name} requests no secondary network and the networks param is empty: no network to check")
        attachments = check_networks(pod, wanted, resources)
        router_attachments = router_attachments or attachments
        for a in attachments:
            vf = f", VF {a.pci_address} ({pcidevice_variable(a.resource)})" if a.pci_address else ""
            log.info(f"pod {name}: network {a.network} on {a.interface}{vf}")
        url = base_url(params.api_scheme, str(pod["status"]["podIP"]), params.api_port)
        with SsrApi(url, pod=f"pod {params.namespace}/{name}", verify=params.tls_verify, log=log) as api:
            check = functools.partial(router_health, api, name, params, credentials,
                                      want_pci=any(a.pci_address for a in attachments))
            health = wait_until(check, clock=clock, interval=params.interval, log=log)
        log.info(f"router {name}: SSR {health.version} at {url}; {len(health.interfaces)} device interface(s) "
                 f"OPER_UP, {len(health.processes)} process(es) RUNNING")
        for address, interface in check_pci(pod, attachments, health.pci).items():
            log.info(f"router {name} drives VF {address} as device-interface {interface}")
        up += len(health.interfaces)
        running += len(health.processes)

    loss = rtt = ""
    traffic_summary = "traffic test off"
    if params.traffic:
        stats = traffic_test(params, cluster, log, pods[0], router_attachments)
        loss, rtt = f"{stats.loss:g}", f"{stats.rtt_avg:g}" if stats.rtt_avg is not None else ""
        traffic_summary = f"traffic {loss}% loss, rtt {rtt} ms over {stats.transmitted} packets"
    summary = (f"{len(pods)} router pod(s) of {params.namespace}/{params.statefulset} healthy: {up} device "
               f"interface(s) OPER_UP, {running} process(es) RUNNING; {traffic_summary}")
    log.info(summary)
    return Result(interfaces_up=up, processes_running=running, packet_loss=loss, rtt_ms=rtt, summary=summary)


def ready_pods(cluster: Cluster, sts: dict[str, Any]) -> list[dict[str, Any]]:
    """The StatefulSet's pods once all of them exist and are Ready; NotYet before."""
    meta, spec = sts["metadata"], sts.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    replicas = int(spec.get("replicas", 1))
    if replicas < 1:
        raise CssrError(f"could not test StatefulSet {namespace}/{name}: it has 0 replicas; scale it up or run "
                        "apply-manifests")
    selector = selectors.from_label_selector(spec.get("selector"))
    if not selector:
        raise CssrError(f"could not list the pods of StatefulSet {namespace}/{name}: it has no selector")
    pods = sorted(cluster.list("v1", "pods", namespace=namespace, label_selector=selector), key=_ordinal)
    what = f"the {replicas} pod(s) of StatefulSet {namespace}/{name} Ready"
    if len(pods) < replicas:
        raise NotYet(f"StatefulSet {name}: {len(pods)} of {replicas} pod(s) exist", what=what,
                     reason=f"only {len(pods)} pod(s) exist", hint=f"check `oc describe statefulset -n {namespace} "
                                                                   f"{name}` for pod creation errors")
    for pod in pods:
        ready, why = _pod_ready(pod)
        if ready and not (pod.get("status") or {}).get("podIP"):
            ready, why = False, "Ready but no pod IP"
        if not ready:
            pod_name = pod["metadata"]["name"]
            raise NotYet(f"pod {pod_name} not Ready yet ({why})", what=f"pod {namespace}/{pod_name} Ready",
                         reason=why, hint=f"check `oc describe pod -n {namespace} {pod_name}` and its events")
    return pods


def _ordinal(pod: dict[str, Any]) -> tuple[int, str]:
    name = pod["metadata"]["name"]
    suffix = name.rsplit("-", 1)[-1]
    return (int(suffix) if suffix.isdigit() else 1 << 30, name)


def _pod_ready(pod: dict[str, Any]) -> tuple[bool, str]:
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return True, ""
            detail = " ".join(filter(None, (condition.get("reason"), condition.get("message"))))
            return False, detail or "Ready is False"
    return False, f"phase {status.get('phase') or 'Pending'}, no Ready condition"


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


# -- networks -------------------------------------------------------------------------------


class NadResources:
    """The SR-IOV resource of each NetworkAttachmentDefinition (its resourceName annotation), cached."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.cache: dict[str, str] = {}

    def __call__(self, network: str) -> str:
        if network not in self.cache:
            namespace, name = network.split("/", 1)
            nad = self.cluster.get_or_none(NAD_API, "network-attachment-definitions", name, namespace)
            self.cache[network] = _annotations(nad or {}).get(RESOURCE_ANNOTATION, "")
        return self.cache[network]


def network_status(pod: dict[str, Any]) -> list[dict[str, Any]]:
    meta = pod["metadata"]
    text = _annotations(pod).get(NETWORK_STATUS)
    where = f"pod {meta['namespace']}/{meta['name']}"
    if not text:
        raise NetworkMismatch(f"could not read the networks of {where}: it has no {NETWORK_STATUS} annotation; "
                              "Multus did not attach its networks: is Multus running, and does the pod request "
                              f"networks in {NETWORKS_ANNOTATION}?")
    try:
        entries = json.loads(text)
    except ValueError as e:
        raise NetworkMismatch(f"could not read the networks of {where}: its {NETWORK_STATUS} annotation is not "
                              f"JSON ({e})") from None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def check_networks(pod: dict[str, Any], wanted: Sequence[NetworkRequest],
                   resource_of: Callable[[str], str]) -> list[Attachment]:
    """Every requested network attached, on the requested interface, SR-IOV ones with a PCI address."""
    meta = pod["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    entries = network_status(pod)
    unused = [e for e in entries if not e.get("default")]
    found = []
    for request in wanted:
        network = request.qualified(namespace)
        matches = [e for e in unused if e.get("name") == network]
        entry = next((e for e in matches if not request.interface or e.get("interface") == request.interface),
                     None)
        if entry is None and matches:
            raise NetworkMismatch(
                f"could not find network {network} on interface {request.interface} of pod {namespace}/{name}: "
                f"{NETWORK_STATUS} has it on {', '.join(str(e.get('interface')) for e in matches)}; fix the "
                f"interface in the networks param or in the pod's {NETWORKS_ANNOTATION} annotation")
        if entry is None:
            attached = ", ".join(f"{e.get('name')} on {e.get('interface')}" for e in entries) or "nothing"
            raise NetworkMismatch(
                f"could not find network {network} in the {NETWORK_STATUS} annotation of pod {namespace}/{name} "
                f"(attached: {attached}); check the NetworkAttachmentDefinition {network} and the pod's events "
                f"(`oc describe pod -n {namespace} {name}`)")
        unused.remove(entry)
        interface = str(entry.get("interface") or "")
        if not interface:
            raise NetworkMismatch(f"could not find the interface of network {network} in pod {namespace}/{name}: "
                                  f"its {NETWORK_STATUS} entry names none; check the Multus logs")
        device = entry.get("device-info") or {}
        pci = str(((device.get("pci") or {}).get("pci-address") or "") if device.get("type") == "pci" else "")
        resource = resource_of(network)
        if (resource or device.get("type") == "pci") and not pci:
            raise NetworkMismatch(
                f"could not find the PCI address of network {network} on {interface} of pod {namespace}/{name}: "
                f"it is an SR-IOV attachment ({resource or 'device-info type pci'}) but {NETWORK_STATUS} has no "
                "device-info pci-address; check that Multus is v3.7 or later and that the SR-IOV device plugin "
                "allocated a VF")
        found.append(Attachment(network, interface, tuple(str(i) for i in entry.get("ips") or []),
                                pci.lower(), resource))
    return found


def pcidevice_variable(resource: str) -> str:
    """The device plugin's variable for a resource: openshift.io/ens6f0np0 -> PCIDEVICE_OPENSHIFT_IO_ENS6F0NP0."""
    if not resource:
        return "PCIDEVICE_OPENSHIFT_IO_<RESOURCE>"
    return "PCIDEVICE_" + re.sub(r"[^A-Za-z0-9]", "_", resource).upper()


def check_pci(pod: dict[str, Any], attachments: Sequence[Attachment],
              router_pci: Mapping[str, str]) -> dict[str, str]:
    """Each VF in network-status is a device-interface of the router; returns {pci address: interface}."""
    meta = pod["metadata"]
    drives = {}
    for a in attachments:
        if not a.pci_address:
            continue
        interface = router_pci.get(a.pci_address)
        if interface is None:
            configured = ", ".join(f"{n} {p}" for p, n in sorted(router_pci.items())) or "no pci-address at all"
            raise NetworkMismatch(
                f"could not match the PCI address of network {a.network} on {a.interface} of pod "
                f"{meta['namespace']}/{meta['name']}: the pod was given VF {a.pci_address} "
                f"({pcidevice_variable(a.resource)}; device-info in {NETWORK_STATUS}) but the router's "
                f"device-interfaces use {configured}; set pci-address {a.pci_address} on the router's "
                f"device-interface for {a.interface}")
        drives[a.pci_address] = interface
    return drives


# -- the router's API -----------------------------------------------------------------------


def load_credentials(params: Params, cluster: Cluster, log: Log) -> Credentials:
    """From files (the Secret mounted by the Task), else from the Secret through the API."""
    secret = f"Secret {params.namespace}/{params.credentials_secret}"
    if params.credentials_dir:
        folder = Path(params.credentials_dir)
        files = folder / "username", folder / "password"
        if all(f.is_file() for f in files):
            username, password = (f.read_text(encoding="utf-8").rstrip("\r\n") for f in files)
            log.info(f"SSR API user {username}, from the files in {folder}")
            return Credentials(username, password, source=f"the files username and password in {folder}")
        log.info(f"no username and password files in {folder}; reading {secret} through the API")
    found = cluster.get_or_none("v1", "secrets", params.credentials_secret, params.namespace)
    if found is None:
        raise ConfigError(f"could not read the SSR API credentials: {secret} not found; create it with `oc create "
                          f"secret generic {params.credentials_secret} -n {params.namespace} "
                          "--from-literal=username=admin --from-file=password=<file>`")
    data = found.get("data") or {}
    values = {}
    for key in ("username", "password"):
        try:
            values[key] = base64.b64decode(data.get(key) or "", validate=True).decode("utf-8").rstrip("\r\n")
        except (binascii.Error, UnicodeDecodeError):
            values[key] = ""
        if not values[key]:
            raise ConfigError(f"could not read the SSR API credentials: {secret} has no usable key {key}; it needs "
                              "the keys username and password")
    log.info(f"SSR API user {values['username']}, from {secret}")
    return Credentials(values["username"], values["password"], source=secret)


def router_health(api: SsrApi, pod: str, params: Params, credentials: Credentials, *, want_pci: bool) -> Health:
    """Log in, read the version, processes, device interfaces (and PCI bindings); NotYet while it warms up."""
    what = f"router pod {params.namespace}/{pod} healthy"
    logs = f"`oc logs -n {params.namespace} {pod}`"
    try:
        if not api.token:
            api.login(credentials)
        version = api.version()
        processes = api.processes(params.router_name)
        interfaces = api.device_interfaces(params.router_name)
        pci = api.device_interface_pci(params.router_name) if want_pci else {}
    except SsrUnavailable as e:
        raise NotYet(f"router {pod} not healthy yet ({e.reason})", what=what, reason=str(e).split(": ", 1)[-1],
                     hint=f"check that the 128T service started ({logs}), or raise timeout") from None
    router = f" {params.router_name}" if params.router_name else ""
    stopped = [p for p in processes if p.status != "RUNNING"]
    down = [i for i in interfaces if i.operational != "OPER_UP"]
    if not processes or not interfaces:
        missing = "processes" if not processes else "device interfaces"
        raise NotYet(f"router {pod} not healthy yet (no {missing} reported)", what=what,
                     reason=f"the router{router} reports no {missing}",
                     hint="check router-name and the router's configuration (device-interface per network)")
    if down or stopped:
        short = ", ".join([f"interface {i.name} {i.operational}" for i in down] +
                          [f"process {p.name} {p.status}" for p in stopped])
        reasons = [f"device interface {i.name} (node {i.node}) is {i.operational}"
                   f"{f', admin {i.admin}' if i.admin else ''}" for i in down]
        reasons += [f"process {p.name} (node {p.node}) is {p.status}" for p in stopped]
        hints = []
        if down:
            hints.append("check the link behind each interface and `show device-interface` on the router")
        if stopped:
            hints.append(f"check `show system processes` on the router and {logs}")
        raise NotYet(f"router {pod} not healthy yet ({short})", what=what, reason="; ".join(reasons),
                     hint="; ".join(hints))
    return Health(version, processes, interfaces, pci)


# -- traffic --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PingStats:
    transmitted: int
    received: int
    loss: float  # percent
    rtt_avg: float | None  # ms; None when nothing came back


def parse_ping(text: str) -> PingStats | None:
    """The summary of iputils ping ("rtt min/avg/max/mdev") or busybox ping ("round-trip min/avg/max")."""
    counts = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received,(?: \+\d+ \w+,)* "
                       r"([\d.]+)% packet loss", text)
    if counts is None:
        return None
    rtt = re.search(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = [\d.]+/([\d.]+)/", text)
    return PingStats(int(counts[1]), int(counts[2]), float(counts[3]), float(rtt[1]) if rtt else None)


def traffic_test(params: Params, cluster: Cluster, log: Log, router: dict[str, Any],
                 router_attachments: Sequence[Attachment]) -> PingStats:
    namespace = params.namespace
    client_end, server_end = traffic_plan(params, router, router_attachments)
    remove_leftovers(cluster, params, log)
    nads = NadResources(cluster)
    suffix = secrets.token_hex(3)
    client_name = f"{params.statefulset}-smoke-client-{suffix}"
    server_name = f"{params.statefulset}-smoke-server-{suffix}"
    clock = Clock(params.timeout)
    created: list[str] = []
    try:
        server = traffic_pod(params, server_name, "server", server_end, command=["sleep", str(params.timeout + 120)],
                             resource_of=nads)
        cluster.create(server)
        created.append(server_name)
        server_ip = wait_until(lambda: server_address(cluster, namespace, server_name, server_end), clock=clock,
                               interval=params.interval, log=log)
        log.info(f"traffic: server pod {server_name} on {server_end.network} at {server_ip}; client pod "
                 f"{client_name} on {client_end.network} via the router at {client_end.gateway}")
        command = ["ping", "-c", str(params.traffic_count), "-i", "0.2", "-W", "2", server_ip]
        cluster.create(traffic_pod(params, client_name, "client", client_end, command=command, resource_of=nads))
        created.append(client_name)
        phase = wait_until(lambda: finished(cluster, namespace, client_name), clock=clock,
                           interval=params.interval, log=log)
        output = pod_log(cluster, namespace, client_name, TEST_POD_CONTAINER)
    finally:
        for name in created:
            try:
                cluster.delete("v1", "pods", name, namespace)
                log.info(f"traffic: deleted test pod {name}")
            except CssrError as e:  # leftovers are removed by the next run, and die at their deadline
                log.warn(f"could not delete test pod {namespace}/{name}: {e}; remove it with `oc delete pod -n "
                         f"{namespace} -l {MANAGED_BY}=cssr-deploy,{COMPONENT}=smoke-test`")
    route = (f"client pod {namespace}/{client_name} ({client_end.network}, net1, via {client_end.gateway}) -> "
             f"server {server_ip} ({server_end.network})")
    stats = parse_ping(output)
    if stats is None:
        tail = " | ".join(output.strip().splitlines()[-3:]) or "no output"
        raise TrafficFailed(f"could not measure traffic through the router: the client pod ended {phase} without a "
                            f"ping summary ({tail}); {route}")
    log.info(f"traffic: {stats.transmitted} sent, {stats.received} received, {stats.loss:g}% loss, "
             f"rtt avg {stats.rtt_avg if stats.rtt_avg is not None else '-'} ms; {route}")
    if stats.loss > params.max_packet_loss:
        raise TrafficFailed(f"could not pass traffic through the router: {stats.loss:g}% of {stats.transmitted} "
                            f"packets lost, above max-packet-loss {params.max_packet_loss}%; {route}; check the "
                            "router's routes and services between the two networks and `show device-interface`")
    if stats.rtt_avg is not None and stats.rtt_avg > params.max_rtt_ms:
        raise TrafficFailed(f"could not pass traffic through the router fast enough: average rtt {stats.rtt_avg:g} "
                            f"ms, above max-rtt-ms {params.max_rtt_ms}; {route}")
    return stats


def traffic_plan(params: Params, router: dict[str, Any],
                 attachments: Sequence[Attachment]) -> tuple[Endpoint, Endpoint]:
    """Client and server endpoints: the params, completed from the router's first two networks and its IPs."""
    namespace = params.namespace
    networks = [a.network for a in attachments]
    ends = []
    for index, (role, given) in enumerate((("client", params.traffic_client), ("server", params.traffic_server))):
        network = ((given.network if "/" in given.network else f"{namespace}/{given.network}") if given.network
                   else networks[index] if len(networks) > index else "")
        if not network:
            raise ConfigError(f"could not plan the traffic test: the router has {len(networks)} network(s) and "
                              f"traffic-{role} names none; set traffic-{role} to "
                              '{"network": "<nad>", "ip": "<cidr>", "gateway": "<router address>"}')
        gateway = given.gateway or next(
            (ip.split("/")[0] for a in attachments if a.network == network for ip in a.ips), "")
        if not gateway:
            raise ConfigError(f"could not plan the traffic test: the router pod {router['metadata']['name']} has no "
                              f"IP on {network} in {NETWORK_STATUS} (DPDK VFs carry none); set \"gateway\" in "
                              f"traffic-{role} to the router's address on {network}")
        ends.append(Endpoint(network, given.ip, gateway))
    if ends[0].network == ends[1].network:
        raise ConfigError(f"could not plan the traffic test: client and server are both on {ends[0].network}, so "
                          "the traffic would not cross the router; put them on two different networks")
    return ends[0], ends[1]


def traffic_labels(params: Params, role: str = "") -> dict[str, str]:
    labels = {MANAGED_BY: "cssr-deploy", COMPONENT: "smoke-test", INSTANCE: params.statefulset}
    if role:
        labels[ROLE_LABEL] = role
    return labels


def traffic_pod(params: Params, name: str, role: str, end: Endpoint, *, command: list[str],
                resource_of: Callable[[str], str]) -> dict[str, Any]:
    """A throwaway pod on one network, whose default route goes through the router."""
    namespace, nad = end.network.split("/", 1)
    selection: dict[str, Any] = {"name": nad, "namespace": namespace, "default-route": [end.gateway]}
    if end.ip:
        selection["ips"] = [end.ip]
    resources: dict[str, dict[str, str]] = {"requests": {"cpu": "10m", "memory": "16Mi"},
                                            "limits": {"memory": "64Mi"}}
    resource = resource_of(end.network)
    if resource:  # an SR-IOV network: the pod needs a VF of its own
        resources["requests"][resource] = resources["limits"][resource] = "1"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": params.namespace, "labels": traffic_labels(params, role),
                     "annotations": {NETWORKS_ANNOTATION: json.dumps([selection], separators=(",", ":"))}},
        "spec": {
            "restartPolicy": "Never",
            # a pod this run could not delete still ends by itself
            "activeDeadlineSeconds": params.timeout + 300,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "containers": [{
                "name": TEST_POD_CONTAINER, "image": params.traffic_image, "command": command,
                "resources": resources,
                "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
            }],
        },
    }


def remove_leftovers(cluster: Cluster, params: Params, log: Log) -> None:
    """Delete test pods of earlier runs that finished or passed their deadline (a running one may be another run's)."""
    selector = ",".join(f"{k}={v}" for k, v in traffic_labels(params).items())
    now = datetime.now(UTC)
    for pod in cluster.list("v1", "pods", namespace=params.namespace, label_selector=selector):
        meta, status = pod["metadata"], pod.get("status") or {}
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        created = _timestamp(meta.get("creationTimestamp"))
        expired = bool(deadline and created and (now - created).total_seconds() > deadline)
        if status.get("phase") in ("Succeeded", "Failed") or expired:
            cluster.delete("v1", "pods", meta["name"], params.namespace)
            log.info(f"traffic: deleted leftover test pod {meta['name']} of an earlier run")


def _timestamp(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def server_address(cluster: Cluster, namespace: str, name: str, end: Endpoint) -> str:
    """The server pod's address on its network, once it runs; NotYet before."""
    pod = cluster.get("v1", "pods", name, namespace)
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    what = f"traffic server pod {namespace}/{name} running"
    hint = f"check `oc describe pod -n {namespace} {name}` (image pull, SR-IOV resources, Multus)"
    if phase != "Running":
        raise NotYet(f"traffic server pod {name} not running yet ({_waiting(pod, phase)})", what=what,
                     reason=_waiting(pod, phase), hint=hint)
    if end.ip:
        return end.ip.split("/")[0]
    for entry in network_status(pod):
        if entry.get("name") == end.network and entry.get("ips"):
            return str(entry["ips"][0]).split("/")[0]
    raise NotYet(f"traffic server pod {name} has no IP on {end.network} yet", what=what,
                 reason=f"it has no IP on {end.network} in {NETWORK_STATUS}",
                 hint=f"give the NetworkAttachmentDefinition an IPAM, or set \"ip\" in traffic-server; {hint}")


def finished(cluster: Cluster, namespace: str, name: str) -> str:
    pod = cluster.get("v1", "pods", name, namespace)
    phase = str((pod.get("status") or {}).get("phase") or "Pending")
    if phase not in ("Succeeded", "Failed"):
        raise NotYet(f"traffic client pod {name} not finished yet ({_waiting(pod, phase)})",
                     what=f"traffic client pod {namespace}/{name} finished", reason=_waiting(pod, phase),
                     hint=f"check `oc describe pod -n {namespace} {name}` and `oc logs -n {namespace} {name}`")
    return phase


def _waiting(pod: dict[str, Any], phase: str) -> str:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"{phase}: {waiting['reason']}"
    return phase


def pod_log(cluster: Cluster, namespace: str, name: str, container: str) -> str:
    path = resource_path("v1", "pods", namespace=namespace, name=name, subresource="log")
    return cluster.read_text(path, query={"container": container}, what=f"read the log of pod {namespace}/{name}")

