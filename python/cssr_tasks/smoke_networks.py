"""The router pod's secondary networks, as Multus attached them.

A pod asks for networks in `k8s.v1.cni.cncf.io/networks` (a JSON list, or the short form
`namespace/name@interface`); Multus records what it attached in `k8s.v1.cni.cncf.io/network-status`,
with `device-info` for SR-IOV VFs. This module reads both, checks that every requested network is
attached where it was asked for, and that each VF is one the router's running configuration binds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cluster import Cluster
from .errors import CssrError

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
NAD_API = "k8s.cni.cncf.io/v1"


class NetworkMismatch(CssrError):
    """A requested network is missing, on the wrong interface, or on a VF the router does not drive."""


@dataclass(frozen=True)
class NetworkRequest:
    """One element of a Multus `k8s.v1.cni.cncf.io/networks` request."""

    name: str
    namespace: str = ""
    interface: str = ""

    def qualified(self, default_namespace: str) -> str:
        return f"{self.namespace or default_namespace}/{self.name}"


@dataclass(frozen=True)
class Attachment:
    """One secondary network of a pod, as Multus reports it."""

    network: str  # namespace/name
    interface: str
    ips: tuple[str, ...]
    pci_address: str  # empty unless device-info says pci
    resource: str  # the SR-IOV resource of its NAD, e.g. openshift.io/ens6f0np0; empty for others


def network_request(item: Any) -> NetworkRequest | None:
    """One element of a networks list: a short-form string or a {"name", "namespace", "interface"} object."""
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
    return tuple(r for r in (network_request(i) for i in items) if r is not None)


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


class NadResources:
    """The SR-IOV resource of each NetworkAttachmentDefinition (its resourceName annotation), cached."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.cache: dict[str, str] = {}

    def __call__(self, network: str) -> str:
        if network not in self.cache:
            namespace, name = network.split("/", 1)
            nad = self.cluster.get_or_none(NAD_API, "network-attachment-definitions", name, namespace)
            self.cache[network] = annotations_of(nad or {}).get(RESOURCE_ANNOTATION, "")
        return self.cache[network]


def network_status(pod: dict[str, Any]) -> list[dict[str, Any]]:
    meta = pod["metadata"]
    text = annotations_of(pod).get(NETWORK_STATUS)
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

