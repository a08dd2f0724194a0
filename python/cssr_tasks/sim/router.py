"""Simulated cSSR objects for the smoke test: the router's StatefulSet and pods, its networks,
and a controller that "runs" the smoke test's traffic pods.

A router pod is what the kubelet and Multus leave behind: Ready, a pod IP, and the
`k8s.v1.cni.cncf.io/network-status` annotation with `device-info` for SR-IOV VFs. The
`PCIDEVICE_OPENSHIFT_IO_<RESOURCE>` variable is not in the pod spec (the device plugin injects
it into the running container), so it is modelled where it has effect: `pcidevice_env()` gives
the variables of a pod, and the test's fake SSR builds its running configuration from them, as
the cSSR binds its device-interfaces to those PCI addresses.

`TrafficController` plays kubelet for the test pods: on create, the server pod runs with an
address on its network, and the client pod ends with the ping output the test scripted, served
by the simulator's pods/log.

`multus()` plays Multus for the pods the simulated StatefulSet controller makes
(`Workloads.pod_hooks`): a running pod gets its pod IP and a network-status entry for each
network it requests (macvlan-like: no PCI address), so that the smoke test finds the router at
the pod IP, where `make demo` serves a FakeSsr.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..smoke_networks import NETWORK_STATUS, NETWORKS_ANNOTATION, RESOURCE_ANNOTATION, requested_networks
from ..smoke_traffic import ROLE_LABEL, TEST_POD_CONTAINER
from . import key_of
from .server import Emulator, Recorded

ROUTER_IMAGE = "quay.io/juniper-128t/128t-5121@sha256:" + "5" * 64

HEALTHY_PING = """PING 192.168.20.10 (192.168.20.10) 56(84) bytes of data.
64 bytes from 192.168.20.10: icmp_seq=1 ttl=63 time=0.061 ms
64 bytes from 192.168.20.10: icmp_seq=2 ttl=63 time=0.043 ms
64 bytes from 192.168.20.10: icmp_seq=3 ttl=63 time=0.035 ms

--- 192.168.20.10 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2046ms
rtt min/avg/max/mdev = 0.035/0.046/0.061/0.011 ms
"""


@dataclass(frozen=True)
class Net:
    """One secondary network of a router pod, as Multus attaches it."""

    name: str  # the NetworkAttachmentDefinition
    interface: str  # net1, net2, ...
    ips: tuple[str, ...] = ()
    pci: str = ""  # the VF for SR-IOV networks
    resource: str = ""  # e.g. openshift.io/ens6f0np0 for SR-IOV networks


def macvlan_nad(name: str, namespace: str, master: str) -> dict[str, Any]:
    """The PoC's macvlan network on a PF's VF 0 (bridge mode, no IPAM)."""
    config = {"cniVersion": "0.3.1", "name": name, "type": "macvlan", "master": master, "mode": "bridge",
              "promiscMode": "true"}
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"config": json.dumps(config)}}


def sriov_nad(name: str, namespace: str, resource: str) -> dict[str, Any]:
    """What the SR-IOV operator renders for a SriovNetwork: the resourceName annotation ties it to the VFs."""
    config = {"cniVersion": "1.0.0", "name": name, "type": "sriov", "vlan": 0, "spoofchk": "off", "trust": "on",
              "vlanQoS": 0, "capabilities": {"mac": True, "ips": True}, "ipam": {}}
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace, "annotations": {RESOURCE_ANNOTATION: resource}},
            "spec": {"config": json.dumps(config)}}


def network_status(namespace: str, pod_ip: str, nets: list[Net]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [{"name": "ovn-kubernetes", "interface": "eth0", "ips": [pod_ip],
                                      "mac": "0a:58:0a:84:02:c8", "default": True, "dns": {}}]
    for index, net in enumerate(nets):
        entry: dict[str, Any] = {"name": f"{namespace}/{net.name}", "interface": net.interface,
                                 "mac": f"96:a2:09:fb:4d:{index + 16:02x}", "dns": {}}
        if net.ips:
            entry["ips"] = list(net.ips)
        if net.pci:
            entry["device-info"] = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": net.pci}}
        entries.append(entry)
    return entries


def pcidevice_env(nets: list[Net]) -> dict[str, str]:
    """The variables the SR-IOV device plugin injects: one per resource, its VFs comma-separated."""
    env: dict[str, list[str]] = {}
    for net in nets:
        if net.resource and net.pci:
            env.setdefault("PCIDEVICE_" + re.sub(r"[^A-Za-z0-9]", "_", net.resource).upper(), []).append(net.pci)
    return {k: ",".join(v) for k, v in env.items()}


def statefulset(name: str, namespace: str, nets: list[Net], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": {
                NETWORKS_ANNOTATION: json.dumps([{"name": n.name} for n in nets])}},
                "spec": {"containers": [{"name": "128t", "image": ROUTER_IMAGE}]}},
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas},
    }


def router_pod(sts: dict[str, Any], index: int, nets: list[Net], *, pod_ip: str = "127.0.0.1",
               ready: bool = True, network_status_annotation: bool = True) -> dict[str, Any]:
    """Pod `<sts>-<index>` as it runs: Ready (or not), with its IP and Multus' network-status."""
    name, namespace = sts["metadata"]["name"], sts["metadata"]["namespace"]
    template = sts["spec"]["template"]
    requests: dict[str, str] = {"cpu": "2", "hugepages-2Mi": "4Gi", "memory": "4Gi"}
    for net in nets:
        if net.resource:
            requests[net.resource] = str(int(requests.get(net.resource, "0")) + 1)
    annotations = dict(template["metadata"]["annotations"])
    if network_status_annotation:
        annotations[NETWORK_STATUS] = json.dumps(network_status(namespace, pod_ip, nets))
    condition = {"type": "Ready", "status": "True"} if ready else {
        "type": "Ready", "status": "False", "reason": "ContainersNotReady",
        "message": "containers with unready status: [128t]"}
    containers = copy.deepcopy(template["spec"]["containers"])
    containers[0]["resources"] = {"requests": requests, "limits": dict(requests)}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-{index}", "namespace": namespace, "annotations": annotations,
                     "labels": {**template["metadata"]["labels"], "statefulset.kubernetes.io/pod-name":
                                f"{name}-{index}"}},
        "spec": {"containers": containers, "nodeName": f"worker-{index}"},
        "status": {"phase": "Running", "podIP": pod_ip, "conditions": [condition],
                   "containerStatuses": [{"name": "128t", "ready": ready, "restartCount": 0,
                                          "state": {"running": {"startedAt": "2026-11-01T00:00:00Z"}}}]},
    }


def pod_nets(pod: dict[str, Any]) -> list[Net]:
    """The networks a pod requests, on the interfaces Multus gives them (net1, net2, ... unless named)."""
    requested = requested_networks(((pod.get("metadata") or {}).get("annotations") or {}).get(NETWORKS_ANNOTATION))
    return [Net(r.name, r.interface or f"net{index + 1}") for index, r in enumerate(requested)]


def multus(pod_ip: str = "127.0.0.1") -> Callable[[dict[str, Any], dict[str, Any]], None]:
    """A `Workloads.pod_hooks` entry: running pods get `pod_ip` and network-status for what they request."""

    def attach(pod: dict[str, Any], sts: dict[str, Any]) -> None:
        if (pod.get("status") or {}).get("phase") != "Running":
            return
        meta = pod["metadata"]
        meta.setdefault("annotations", {})[NETWORK_STATUS] = json.dumps(
            network_status(meta["namespace"], pod_ip, pod_nets(pod)))
        pod["status"]["podIP"] = pod_ip

    return attach


@dataclass
class TrafficController:
    """Runs the smoke test's pods when they are created: append it to `sim.emulator.controllers`."""

    ping_output: str = HEALTHY_PING
    client_phase: str = "Succeeded"  # ping exits 1 (Failed) when nothing comes back
    server_ip: str = "192.168.20.10/24"  # when the pod asks for no address: what the NAD's IPAM gives
    start_server: bool = True  # False: the server stays Pending (ContainerCreating)
    created: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, emulator: Emulator, record: Recorded, obj: dict[str, Any] | None) -> None:
        if record.verb != "create" or record.resource != "pods" or obj is None:
            return
        role = (obj["metadata"].get("labels") or {}).get(ROLE_LABEL)
        if role not in ("client", "server"):
            return
        self.created.append(copy.deepcopy(obj))
        meta = obj["metadata"]
        requested = json.loads(meta["annotations"][NETWORKS_ANNOTATION])[0]
        if role == "server" and not self.start_server:
            obj["status"] = {"phase": "Pending", "containerStatuses": [{
                "name": TEST_POD_CONTAINER, "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        elif role == "server":
            ips = requested.get("ips") or [self.server_ip]
            status = network_status(meta["namespace"], "10.131.0.77", [Net(requested["name"], "net1", tuple(ips))])
            meta["annotations"][NETWORK_STATUS] = json.dumps(status)
            obj["status"] = {"phase": "Running", "podIP": "10.131.0.77",
                             "conditions": [{"type": "Ready", "status": "True"}]}
        else:
            emulator.logs[(meta["namespace"], meta["name"], TEST_POD_CONTAINER)] = self.ping_output
            code = 0 if self.client_phase == "Succeeded" else 1
            obj["status"] = {"phase": self.client_phase, "podIP": "10.131.0.78", "containerStatuses": [{
                "name": TEST_POD_CONTAINER, "ready": False,
                "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}]}
        emulator.store.put(key_of(obj), obj)
