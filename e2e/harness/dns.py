"""Stage D, cluster DNS: CoreDNS, built from the pinned coredns/coredns module, run as a host process
on NODE_IP:53, behind the kube-dns Service whose clusterIP the kubelet writes into every pod's
resolv.conf (kubelet.py, clusterDNS).

What it is made of comes from Kubernetes' own CoreDNS addon of the pinned k8s.io/kubernetes module
(cluster/addons/dns/coredns/coredns.yaml.base in the Go module cache, never copied here): the
ServiceAccount `coredns`, the ClusterRole and ClusterRoleBinding `system:coredns`, the kube-dns
Service and the Corefile of its ConfigMap. Changes, each for a reason:

- CoreDNS runs on the host, not in a pod: pods on this node would need CoreDNS's image and the
  kubelet's DNS before it is there; on the host it forwards to the host's own /etc/resolv.conf.
  It talks to the API server with a TokenRequest token of the ServiceAccount (the `kubeconfig`
  option of the kubernetes plugin), so RBAC is the addon's.
- Corefile: `bind NODE_IP` (port 53 on this address only; the host may run its own resolver on
  other addresses); health, ready and prometheus on ports of our own; no `reload` (the harness
  restarts CoreDNS when it rewrites the Corefile); health without `lameduck` (nothing drains: the
  Service's EndpointSlice never changes, so a lame duck would only slow `down` by 5 s).
- The Service has no selector (no pod backs it) and an EndpointSlice of ours names NODE_IP with
  CoreDNS's ports; kube-proxy DNATs the clusterIP to it. EndpointSlices refuse loopback
  addresses, hence NODE_IP. The EndpointSlice controller leaves selectorless Services alone, and
  the managed-by label keeps the mirroring controller off it.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import node_images
from .control_plane import start_or_reuse
from .kubelet import write_if_changed
from .layout import (
    CLUSTER_DNS_IP,
    CLUSTER_DOMAIN,
    COREDNS_HEALTH_PORT,
    COREDNS_METRICS_PORT,
    COREDNS_READY_PORT,
    HOST,
    NODE_IP,
    NODE_NAME,
    Layout,
)
from .log import say
from .node import changed_since_start
from .processes import Processes
from .tekton import account_kubeconfig, kubectl

NAME = "coredns"
NAMESPACE = "kube-system"
ACCOUNT = "coredns"
SERVICE = "kube-dns"
ADDON = Path("cluster/addons/dns/coredns/coredns.yaml.base")
FIELD_MANAGER = "cssr-e2e-dns"
# What the addon's placeholders become (cluster/addons/dns/coredns/transforms2sed.sed names them).
PLACEHOLDERS = {"__DNS__DOMAIN__": CLUSTER_DOMAIN, "__DNS__SERVER__": CLUSTER_DNS_IP,
                "__DNS__MEMORY__LIMIT__": "170Mi"}
# The Service's port names and what serves them on NODE_IP (the EndpointSlice's ports).
TARGET_PORTS = {"dns": 53, "dns-tcp": 53, "metrics": COREDNS_METRICS_PORT}


class DnsError(RuntimeError):
    pass


def folder(layout: Layout) -> Path:
    return layout.cache / "dns"


def corefile_path(layout: Layout) -> Path:
    return folder(layout) / "Corefile"


def addon(layout: Layout) -> dict[str, dict[str, Any]]:
    """The addon's objects by kind, placeholders filled in, from the pinned Kubernetes module."""
    source, version = node_images.kubernetes_source(layout)
    text = (source / ADDON).read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    docs = {d["kind"]: d for d in yaml.safe_load_all(text) if d}
    missing = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service"} - set(docs)
    if missing:
        raise DnsError(f"{ADDON} of k8s.io/kubernetes {version} lacks {', '.join(sorted(missing))}; "
                       "update dns.py to that release's CoreDNS addon")
    return docs


def _edit(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if count != 1:
        raise DnsError(f"the addon's Corefile has {count} matches of {pattern!r} (expected 1); "
                       f"update dns.corefile to the pinned addon")
    return new


def corefile(layout: Layout, docs: dict[str, dict[str, Any]]) -> str:
    """The addon's Corefile with the changes of the module docstring."""
    text = docs["ConfigMap"]["data"]["Corefile"]
    text = _edit(text, r"^(\s*)\.:53 \{\n", rf"\g<0>\g<1>    bind {NODE_IP}\n")
    text = _edit(text, r"^(\s*)health(?: \{[^}]*\})?\n", rf"\g<1>health {HOST}:{COREDNS_HEALTH_PORT}\n")
    text = _edit(text, r"^(\s*)ready\n", rf"\g<1>ready {HOST}:{COREDNS_READY_PORT}\n")
    text = _edit(text, rf"^(\s*)kubernetes {re.escape(CLUSTER_DOMAIN)} .*\{{\n",
                 rf"\g<0>\g<1>    kubeconfig {layout.kubeconfig(NAME)} {NAME}\n")
    text = _edit(text, r"^(\s*)prometheus \S+\n", rf"\g<1>prometheus {NODE_IP}:{COREDNS_METRICS_PORT}\n")
    return _edit(text, r"^\s*reload\n", "")


def service(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    svc = docs["Service"]
    svc["spec"].pop("selector")
    return svc


def endpoint_slice(svc: dict[str, Any]) -> dict[str, Any]:
    """CoreDNS on NODE_IP, one port per port of the Service, named as the Service names them."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{SERVICE}-host", "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": SERVICE,
                                "endpointslice.kubernetes.io/managed-by": "cssr-e2e-harness"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}, "nodeName": NODE_NAME}],
        "ports": [{"name": p["name"], "protocol": p["protocol"], "port": TARGET_PORTS[p["name"]]}
                  for p in svc["spec"]["ports"]],
    }


def objects(layout: Layout) -> tuple[list[dict[str, Any]], str]:
    docs = addon(layout)
    svc = service(docs)
    return [docs["ServiceAccount"], docs["ClusterRole"], docs["ClusterRoleBinding"], svc, endpoint_slice(svc)], \
        corefile(layout, docs)


def token_kubeconfig(layout: Layout) -> Path:
    """A kubeconfig with a fresh TokenRequest token of kube-system/coredns, named as the Corefile names it."""
    return account_kubeconfig(layout, layout.kubeconfig(NAME), ACCOUNT, NAMESPACE, name=NAME)


def ready() -> tuple[bool, str]:
    """CoreDNS's /ready answers 200 once every plugin is ready: the kubernetes plugin has synced
    Services and EndpointSlices from the API server."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{COREDNS_READY_PORT}/ready", timeout=3) as response:
            return response.status == 200, response.read().decode(errors="replace")[:200]
    except urllib.error.HTTPError as e:
        return False, f"{e.code} {e.read().decode(errors='replace')[:200]}"
    except (OSError, urllib.error.URLError) as e:
        return False, str(e)


def _apply(layout: Layout, docs: list[dict[str, Any]]) -> None:
    current = kubectl(layout, "get", "service", SERVICE, "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}",
                      check=False)
    if current.returncode == 0 and current.stdout.strip() != CLUSTER_DNS_IP:
        raise DnsError(f"Service {NAMESPACE}/{SERVICE} has clusterIP {current.stdout.strip()}, not {CLUSTER_DNS_IP} "
                       f"(clusterIP is immutable); delete it: kubectl delete service -n {NAMESPACE} {SERVICE}")
    # Server-side apply of unchanged objects persists nothing (no resourceVersion moves).
    kubectl(layout, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-",
            stdin=yaml.safe_dump_all(docs))


def up(layout: Layout, *, timeout: float = 120.0) -> dict[str, Any]:
    """Apply the addon's RBAC, the kube-dns Service and its EndpointSlice, write the Corefile and
    start CoreDNS unless it runs ready with the same flags and Corefile."""
    began = time.monotonic()
    binary = layout.binary(NAME)
    if not binary.exists():
        raise DnsError(f"{binary} is missing; build it: build.build(layout, ('coredns',))")
    docs, text = objects(layout)
    _apply(layout, docs)
    folder(layout).mkdir(parents=True, exist_ok=True)
    write_if_changed(corefile_path(layout), text)
    argv = [str(binary), "-conf", str(corefile_path(layout))]
    processes = Processes(layout.processes)
    stale = changed_since_start(processes, NAME, corefile_path(layout))
    if stale or not processes.running(NAME, argv) or not layout.kubeconfig(NAME).exists():
        token_kubeconfig(layout)
    result = start_or_reuse(processes, NAME, argv, ready, log=layout.logs / f"{NAME}.log",
                            timeout=timeout, restart=stale)
    result["seconds"] = round(time.monotonic() - began, 2)
    say(f"cluster DNS: {SERVICE} {CLUSTER_DNS_IP}:53 -> CoreDNS on {NODE_IP}:53 "
        f"({'reused' if result['reused'] else 'started'}; up in {result['seconds']:.1f} s)")
    return result
