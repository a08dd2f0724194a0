"""Smoke test of the router's data path: a green rollout does not prove that packets flow.

For every pod of the cSSR StatefulSet: the pod is Ready; Multus' `network-status` lists every
requested network with its interface, and a PCI address for SR-IOV attachments
(`smoke_networks`); the router, through its REST/GraphQL API on the pod IP, logs in, has every
process RUNNING and its device-interfaces healthy as stage_check judges them, those behind the
pod's networks OPER_UP, and drives the very VFs the SR-IOV device plugin gave the pod
(`smoke_router`). With `traffic`, two throwaway pods on two of the router's networks ping each
other through the router, and loss and round-trip time are checked against thresholds
(`smoke_traffic`). Every wait rides out transient API errors until its deadline (`waits`).

The device plugin's `PCIDEVICE_OPENSHIFT_IO_<RESOURCE>` variable exists only in the running
container (the pod spec does not hold it), and reading it would take `pods/exec` into a
privileged pod. The cSSR binds its device-interfaces by that variable's PCI addresses, so the
step compares the router's running configuration (`deviceInterface` `pciAddress`) with the
addresses Multus recorded: the same question, answered with read-only rights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import selectors
from .cluster import Cluster
from .errors import CssrError, NotFound
from .log import Log
from .smoke_networks import (
    NETWORKS_ANNOTATION,
    Attachment,
    NadResources,
    annotations_of,
    check_networks,
    check_pci,
    pcidevice_variable,
    requested_networks,
)
from .smoke_params import Params
from .smoke_router import Health, RouterProbe, load_credentials
from .smoke_traffic import traffic_test
from .ssr_api import SsrApi, base_url
from .waits import Clock, NotYet, wait_until

NEEDS_CLUSTER = True

__all__ = ["NEEDS_CLUSTER", "Params", "Result", "run"]


@dataclass(frozen=True)
class Result:
    interfaces_up: int
    processes_running: int
    packet_loss: str  # percent, as ping reports it; empty when the traffic test is off
    rtt_ms: str  # average round-trip time; empty when the traffic test is off
    summary: str


def run(params: Params, *, cluster: Cluster, log: Log) -> Result:
    clock = Clock(params.timeout)
    sts = cluster.get_or_none("apps/v1", "statefulsets", params.statefulset, params.namespace)
    if sts is None:
        raise NotFound(f"could not get StatefulSet {params.namespace}/{params.statefulset}: not found; run "
                       "apply-manifests first, or check the namespace and statefulset params", status=404)
    pods = wait_until(lambda: ready_pods(cluster, sts), clock=clock, interval=params.interval, log=log)
    credentials = load_credentials(cluster, log, namespace=params.namespace, secret_name=params.credentials_secret,
                                   folder=params.credentials_dir)
    if params.tls_verify is False:
        log.warn("tls-verify is false: the SSR API's certificate is not verified (SSRs ship a self-signed one)")
    resources = NadResources(cluster)
    up = running = 0
    router_attachments: list[Attachment] = []
    for pod in pods:
        name = pod["metadata"]["name"]
        wanted = params.networks or requested_networks(annotations_of(pod).get(NETWORKS_ANNOTATION))
        if not wanted:
            log.warn(f"pod {name} requests no secondary network and the networks param is empty: no network to check")
        attachments = check_networks(pod, wanted, resources)
        router_attachments = router_attachments or attachments
        for a in attachments:
            vf = f", VF {a.pci_address} ({pcidevice_variable(a.resource)})" if a.pci_address else ""
            log.info(f"pod {name}: network {a.network} on {a.interface}{vf}")
        url = base_url(params.api_scheme, str(pod["status"]["podIP"]), params.api_port)
        with SsrApi(url, pod=f"pod {params.namespace}/{name}", verify=params.tls_verify, log=log) as api:
            probe = RouterProbe(api, credentials, pod=name, namespace=params.namespace, router=params.router_name,
                                attachments=attachments)
            health = wait_until(probe.check, clock=clock, interval=params.interval, log=log)
        report_health(log, name, url, health)
        for address, interface in check_pci(pod, attachments, health.pci).items():
            log.info(f"router {name} drives VF {address} as device-interface {interface}")
        up += len(health.up)
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


def report_health(log: Log, pod: str, url: str, health: Health) -> None:
    version = f"SSR {health.version}" if health.version else "SSR of unknown version (no /api/v1/version or /system)"
    log.info(f"router {pod}: {version} at {url}; {len(health.up)} device interface(s) OPER_UP, "
             f"{len(health.behind)} of them behind its networks; {len(health.processes)} process(es) RUNNING")
    for i in health.skipped:
        log.info(f"router {pod}: device interface {i.name} (node {i.node}) is ADMIN_DOWN: not checked")
    for a in health.unbound:
        log.warn(f"router {pod}: no device-interface binds network {a.network} on {a.interface} (targetInterface "
                 f"{a.interface} in the running configuration): its state is not checked")


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

