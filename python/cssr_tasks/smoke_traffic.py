"""The traffic test: two throwaway pods on two of the router's networks ping each other through it.

The server pod sleeps on one network, the client pod pings it from another, each with its
default route via the router's address on its network; the client's log holds ping's summary,
which is checked against the loss and round-trip thresholds. The pods are labelled, carry this
run's token and an `activeDeadlineSeconds`, and are deleted whatever the outcome; a later run
removes what a killed one left. A create whose answer was lost (a 503 after the API server
stored the pod) meets 409 on its retry: the pod with this run's token is adopted, not leaked.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .cluster import Cluster, resource_path
from .errors import ConfigError, Conflict, CssrError
from .log import Log
from .smoke_networks import (
    NETWORK_STATUS,
    NETWORKS_ANNOTATION,
    Attachment,
    NadResources,
    annotations_of,
    network_status,
)
from .smoke_params import Endpoint, Params
from .waits import Clock, NotYet, wait_until

# Test pods carry these labels, so that a later run finds and removes what a killed run left.
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
ROLE_LABEL = "cssr-deploy/smoke-test-role"
RUN_ANNOTATION = "cssr-deploy/smoke-test-run"  # a token per run: a 409 on a pod with ours is our own create
TEST_POD_CONTAINER = "ping"


class TrafficFailed(CssrError):
    """Packets did not cross the router well enough."""




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
    suffix, token = secrets.token_hex(3), secrets.token_hex(8)
    client_name = f"{params.statefulset}-smoke-client-{suffix}"
    server_name = f"{params.statefulset}-smoke-server-{suffix}"
    clock = Clock(params.timeout)
    created: list[str] = []
    try:
        server = traffic_pod(params, server_name, "server", server_end, command=["sleep", str(params.timeout + 120)],
                             resource_of=nads, token=token)
        created.append(server_name)  # before the create: a create that fails late may still have stored it
        create_or_adopt(cluster, server, token, log)
        server_ip = wait_until(lambda: server_address(cluster, namespace, server_name, server_end), clock=clock,
                               interval=params.interval, log=log)
        log.info(f"traffic: server pod {server_name} on {server_end.network} at {server_ip}; client pod "
                 f"{client_name} on {client_end.network} via the router at {client_end.gateway}")
        command = ["ping", "-c", str(params.traffic_count), "-i", "0.2", "-W", "2", server_ip]
        created.append(client_name)
        create_or_adopt(cluster, traffic_pod(params, client_name, "client", client_end, command=command,
                                             resource_of=nads, token=token), token, log)
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


def create_or_adopt(cluster: Cluster, pod: dict[str, Any], token: str, log: Log) -> None:
    """Create a test pod; on 409, adopt the pod if it carries this run's token (our create, its answer lost)."""
    meta = pod["metadata"]
    try:
        cluster.create(pod)
    except Conflict:
        found = cluster.get_or_none("v1", "pods", meta["name"], meta["namespace"])
        if found is None or annotations_of(found).get(RUN_ANNOTATION) != token:
            raise
        log.info(f"traffic: test pod {meta['name']} exists with this run's token (the answer to its create was "
                 "lost, the retry met 409): adopted")


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
                resource_of: Callable[[str], str], token: str) -> dict[str, Any]:
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
                     "annotations": {NETWORKS_ANNOTATION: json.dumps([selection], separators=(",", ":")),
                                     RUN_ANNOTATION: token}},
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

