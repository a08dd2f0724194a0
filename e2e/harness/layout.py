"""Where the harness keeps things, and the loopback ports of the cluster it starts.

Everything built or generated lives under `.cache/e2e/` (git-ignored); what a person or CI
reads lives under `out/e2e/`. Ports are fixed (not 0) so that a second `make e2e` finds the
running cluster again; they sit away from the components' defaults so that they do not clash
with another cluster on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "e2e"
CACHE = ROOT / ".cache" / "e2e"
OUT = ROOT / "out" / "e2e"

HOST = "127.0.0.1"
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
APISERVER_PORT = 26443
CONTROLLER_MANAGER_PORT = 26257
SCHEDULER_PORT = 26259
# Stage B. Knative binds the webhook and probe ports on all interfaces (":port", no flag to
# change it); metrics are bound to 127.0.0.1 by METRICS_PROMETHEUS_HOST.
TEKTON_WEBHOOK_PORT = 28443
TEKTON_WEBHOOK_PROBES_PORT = 28080
TEKTON_WEBHOOK_METRICS_PORT = 29090
TEKTON_WEBHOOK_PROFILING_PORT = 28008
TEKTON_CONTROLLER_PROBES_PORT = 28081
TEKTON_CONTROLLER_METRICS_PORT = 29091
TEKTON_CONTROLLER_PROFILING_PORT = 28009
# Stage C: the local registry the node pulls Tekton's, the suite's and the stand-in images from.
REGISTRY_PORT = 25000
SERVICE_CIDR = "10.96.0.0/24"
FIRST_SERVICE_IP = "10.96.0.1"
# The API server listens on an address of a link the harness makes, not on 127.0.0.1: pods
# reach it through the `kubernetes` Service (kube-proxy DNATs 10.96.0.1:443 to it), and a pod's
# packets to 127.0.0.1 would stay in the pod. From the host it answers like a loopback address.
NODE_LINK = "cssr-e2e0"
NODE_IP = "10.250.0.1"
# Stage C, the node: pods get addresses of the CNI bridge's subnet; kubelet and kube-proxy ports
# sit away from the defaults (10250, 10248, 10249, 10256) like the control plane's.
NODE_NAME = "cssr-e2e-node"
POD_BRIDGE = "cssr-e2e-br0"
POD_CIDR = "10.244.0.0/24"
KUBELET_PORT = 20250
KUBELET_HEALTHZ_PORT = 20248
KUBE_PROXY_METRICS_PORT = 20249
KUBE_PROXY_HEALTHZ_PORT = 20256
# Stage D, cluster DNS: CoreDNS serves port 53 on NODE_IP only (the `bind` plugin), behind the
# kube-dns Service's clusterIP that the kubelet writes into pods' resolv.conf; its health, ready
# and metrics ports sit away from the defaults (8080, 8181, 9153).
CLUSTER_DOMAIN = "cluster.local"
CLUSTER_DNS_IP = "10.96.0.10"
COREDNS_HEALTH_PORT = 28054
COREDNS_READY_PORT = 28055
COREDNS_METRICS_PORT = 29153


@dataclass(frozen=True)
class Layout:
    """Paths of one harness installation; tests and the CLI both take them from here."""

    cache: Path = CACHE
    out: Path = OUT

    @property
    def bin(self) -> Path:
        return self.cache / "bin"

    @property
    def gocache(self) -> Path:
        return self.cache / "go-build"

    @property
    def state(self) -> Path:
        """The running cluster: certificates, etcd data, logs, the process record."""
        return self.cache / "cluster"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def processes(self) -> Path:
        return self.state / "processes.json"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.out / "kubeconfig"

    @property
    def report(self) -> Path:
        return self.out / "report.json"

    @property
    def images(self) -> Path:
        """Stage C's image builds: the buildah store, the Debian rootfs, downloaded .debs, build keys."""
        return self.cache / "images"

    @property
    def registry_root(self) -> Path:
        return self.cache / "registry"

    @property
    def node(self) -> Path:
        """Stage C: containerd's root, state and socket, the CNI config, the kubelet's root dir,
        pod logs and the node's images (pause, busybox)."""
        return self.cache / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.node / "containerd" / "containerd.sock"

    def binary(self, name: str) -> Path:
        return self.bin / name

    def kubeconfig(self, user: str) -> Path:
        return self.state / f"{user}.kubeconfig"


def api_url() -> str:
    return f"https://{NODE_IP}:{APISERVER_PORT}"


def etcd_url() -> str:
    return f"http://{HOST}:{ETCD_CLIENT_PORT}"
