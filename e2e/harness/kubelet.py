"""Stage C's node agents: the kubelet and kube-proxy, built from the same pinned k8s.io/kubernetes
module as the control plane, run as host processes with client certificates (kubelet: CN
system:node:<name>, O system:nodes, so the Node authorizer and NodeRestriction apply; kube-proxy:
CN system:kube-proxy, which the API server's bootstrap policy binds to system:node-proxier).

What this sandbox needs of the KubeletConfiguration: failCgroupV1 false (cgroup v1), cgroupfs
(PID 1 is not systemd), failSwapOn false, a cgroupRoot of our own (/cssr-e2e, removed at down),
pod logs under .cache/e2e; ports off the defaults. kube-proxy runs in iptables mode and leaves
the host's conntrack sysctls and route_localnet alone.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .layout import (
    CLUSTER_DNS_IP,
    CLUSTER_DOMAIN,
    HOST,
    KUBE_PROXY_HEALTHZ_PORT,
    KUBE_PROXY_METRICS_PORT,
    KUBELET_HEALTHZ_PORT,
    KUBELET_PORT,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    Layout,
)

CGROUP_ROOT = "/cssr-e2e"
CGROUP_FS = Path("/sys/fs/cgroup")


class NodeError(RuntimeError):
    pass


def kubelet_root(layout: Layout) -> Path:
    return layout.node / "kubelet"


def pod_logs(layout: Layout) -> Path:
    return layout.node / "pod-logs"


def cgroup_dirs() -> list[Path]:
    """Our cgroup root in every mounted v1 hierarchy (the kubelet wants it to exist in each)."""
    return [h / CGROUP_ROOT.lstrip("/") for h in sorted(CGROUP_FS.iterdir())
            if h.is_dir() and not h.is_symlink() and (h / "cgroup.procs").exists()]


def kubelet_config(layout: Layout) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": HOST, "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(layout.pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs", "cgroupRoot": CGROUP_ROOT, "failCgroupV1": False, "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(pod_logs(layout)),
        # Pods resolve through the kube-dns Service (Stage D, dns.py): the kubelet writes its IP and
        # the search list of the pod's namespace into each pod's /etc/resolv.conf (dnsPolicy ClusterFirst).
        "clusterDomain": CLUSTER_DOMAIN, "clusterDNS": [CLUSTER_DNS_IP],
        # A busy CI disk must not evict the test pods: only a nearly full one does.
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
        "registerNode": True, "rotateCertificates": False, "serverTLSBootstrap": False,
        "resolvConf": "/etc/resolv.conf",
    }


def kube_proxy_config(layout: Layout) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "iptables", "hostnameOverride": NODE_NAME, "bindAddress": NODE_IP, "clusterCIDR": POD_CIDR,
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "healthzBindAddress": f"{HOST}:{KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": f"{HOST}:{KUBE_PROXY_METRICS_PORT}",
        # 0: leave the host's conntrack table size and timeouts as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        # NodePorts on 127.0.0.1 would need route_localnet=1 on the host; no test uses them.
        "iptables": {"localhostNodePorts": False},
    }


def write_configs(layout: Layout) -> None:
    for folder in (kubelet_root(layout), pod_logs(layout)):
        folder.mkdir(parents=True, exist_ok=True)
    for path in cgroup_dirs():
        path.mkdir(exist_ok=True)
        # A new v1 cpuset cgroup has no CPUs or memory nodes: no task could join it.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (path / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((path.parent / name).read_text())
    write_if_changed(layout.node / "kubelet.yaml", yaml.safe_dump(kubelet_config(layout), sort_keys=False))
    write_if_changed(layout.node / "kube-proxy.yaml", yaml.safe_dump(kube_proxy_config(layout), sort_keys=False))


def write_if_changed(path: Path, text: str) -> None:
    # kube-proxy watches its config file and exits on any write to it ("content of the proxy
    # server's configuration file was updated"): a rerun must not touch an unchanged file.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def commands(layout: Layout) -> dict[str, list[str]]:
    return {
        "kubelet": [str(layout.binary("kubelet")), f"--config={layout.node / 'kubelet.yaml'}",
                    f"--kubeconfig={layout.kubeconfig('kubelet')}", f"--root-dir={kubelet_root(layout)}",
                    # Its self-signed serving certificate; the default is /var/lib/kubelet/pki.
                    f"--cert-dir={kubelet_root(layout) / 'pki'}",
                    f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", "--v=1"],
        "kube-proxy": [str(layout.binary("kube-proxy")), f"--config={layout.node / 'kube-proxy.yaml'}", "--v=1"],
    }


def _http(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200, response.read().decode(errors="replace")[:200]
    except urllib.error.HTTPError as e:
        return False, f"{e.code} {e.read().decode(errors='replace')[:200]}"
    except (OSError, urllib.error.URLError) as e:
        return False, str(e)


def kubelet_healthy() -> tuple[bool, str]:
    return _http(f"http://{HOST}:{KUBELET_HEALTHZ_PORT}/healthz")


def kube_proxy_healthy() -> tuple[bool, str]:
    """kube-proxy's /healthz answers 200 once it has synced its rules with the API server."""
    return _http(f"http://{HOST}:{KUBE_PROXY_HEALTHZ_PORT}/healthz")


def node_ready(layout: Layout, since: float = 0.0) -> tuple[bool, str]:
    """The Node object's Ready condition, read with kubectl as the admin, reported by a kubelet
    that beat at or after `since` (a restarted kubelet's Node still shows the old one's Ready)."""
    proc = subprocess.run([str(layout.binary("kubectl")), f"--kubeconfig={layout.admin_kubeconfig}", "get", "node",
                           NODE_NAME, "-o", "json"], capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode:
        return False, proc.stderr.strip()
    conditions = {c["type"]: c for c in json.loads(proc.stdout)["status"].get("conditions", [])}
    ready = conditions.get("Ready", {})
    beat = ready.get("lastHeartbeatTime", "")
    fresh = beat >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(since)))
    return ready.get("status") == "True" and fresh, f"Ready={ready.get('status')} at {beat}: {ready.get('message')}"


# As kubeadm binds it: the API server's kubelet client (CN kube-apiserver, certs.py) may use the
# kubelet's API (logs, exec), which the kubelet authorizes by webhook (nodes/proxy, nodes/log).
APISERVER_KUBELET_ACCESS = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": "cssr-e2e:kube-apiserver-kubelet-api-admin"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kube-apiserver"}],
}


def grant_apiserver_kubelet_access(layout: Layout) -> None:
    proc = subprocess.run([str(layout.binary("kubectl")), f"--kubeconfig={layout.admin_kubeconfig}", "apply",
                           "--server-side", "--field-manager=cssr-e2e-node", "-f", "-"],
                          input=json.dumps(APISERVER_KUBELET_ACCESS), capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode:
        raise NodeError(f"kubectl apply of the API server's kubelet access failed: {proc.stderr.strip()[-400:]}")


# The kubelet's own iptables chains (pkg/kubelet/kubelet_network_linux.go), per table, and the
# built-in chains that jump to them; kube-proxy --cleanup leaves them.
KUBELET_CHAINS = {"filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"), "nat": ("KUBE-KUBELET-CANARY",),
                  "mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")}
KUBELET_JUMPS = (("filter", "INPUT", "KUBE-FIREWALL"), ("filter", "OUTPUT", "KUBE-FIREWALL"))


def kubelet_iptables_cleanup() -> int:
    """Remove the kubelet's chains from iptables and ip6tables; returns how many were removed."""
    removed = 0
    for tool in ("iptables", "ip6tables"):
        for table, chain, target in KUBELET_JUMPS:
            while subprocess.run([tool, "-w", "-t", table, "-D", chain, "-j", target], capture_output=True,
                                 check=False).returncode == 0:
                pass
        for table, chains in KUBELET_CHAINS.items():
            for chain in chains:
                if subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True,
                                  check=False).returncode == 0:
                    subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True, check=False)
                    removed += 1
    return removed


def proxy_cleanup(layout: Layout) -> None:
    """kube-proxy's own `--cleanup`: removes the KUBE-* iptables chains and rules it made."""
    if not layout.binary("kube-proxy").exists():
        return
    proc = subprocess.run([str(layout.binary("kube-proxy")), "--cleanup", "--v=0"], capture_output=True, text=True,
                          check=False, timeout=120)
    if proc.returncode:
        raise NodeError(f"kube-proxy --cleanup failed: {proc.stderr.strip()[-400:]}")
