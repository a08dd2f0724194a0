"""Stage D: Multus and macvlan on the node, so that pods get real secondary networks.

Multus' thin plugin (cmd/multus of gopkg.in/k8snetworkplumbingwg/multus-cni.v4, built by build.py)
is the node's CNI plugin: its config is the first file of containerd's CNI conf dir (containerd
loads one, `max_conf_num = 1`, and reloads the dir when it changes), it delegates every pod's
cluster network to Stage C's bridge conflist (`clusterNetwork`, a file path), adds the networks a
pod requests in `k8s.v1.cni.cncf.io/networks` from their NetworkAttachmentDefinitions, and writes
the pod's `k8s.v1.cni.cncf.io/network-status` itself, with the token of ServiceAccount
kube-system/multus bound to upstream's ClusterRole (deployments/multus-daemonset.yml, read from the
module cache). Upstream runs it from a DaemonSet that copies the binary and writes this config;
here the harness does both, in paths of ours: the binary and Debian's macvlan are linked into
containerd's CNI bin dir, Multus' cache and log stay under .cache/e2e.

The macvlan parents are veth pairs (cssr-e2e-n1a/b, cssr-e2e-n2a/b), both ends up: this kernel has
no dummy driver (`ip link add ... type dummy`: "Unknown device type"), and a macvlan is down when
its parent has no carrier (a bridge without ports has none). `down` removes the config, the links
and the pairs.

The traffic test's image (cssr-e2e/ping: Debian's iputils-ping, as nobody) is built here too.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from . import containerd, hostnet, registry, tasks_image, tekton
from .build import go_env
from .image_build import Buildah, content_key, ensure
from .layout import E2E, Layout
from .log import say

MODULE = "gopkg.in/k8snetworkplumbingwg/multus-cni.v4"
NAMESPACE = "kube-system"
ACCOUNT = "multus"
NETWORK = "multus-cni-network"
CONF_FILE = "00-multus.conf"  # sorts before Stage C's 10-cssr-e2e.conflist
PLUGINS = ("macvlan", "static")  # static: IPAM of fixed addresses (the router stand-in's)
# macvlan parent -> its veth peer; tests name the parents in their NetworkAttachmentDefinitions.
PARENTS = {"cssr-e2e-n1a": "cssr-e2e-n1b", "cssr-e2e-n2a": "cssr-e2e-n2b"}
TOKEN_RENEW_SECONDS = 24 * 3600
PING_CONTAINERFILE = E2E / "images" / "ping" / "Containerfile"


class MultusError(RuntimeError):
    pass


def conf_path(layout: Layout) -> Path:
    return containerd.cni_conf_dir(layout) / CONF_FILE


def kubeconfig_path(layout: Layout) -> Path:
    return layout.node / "cni" / "multus.kubeconfig"


def log_path(layout: Layout) -> Path:
    return layout.logs / "multus.log"


def ipam_dir(layout: Layout) -> Path:
    """host-local's dataDir for the secondary networks (its default /var/lib/cni/networks is the host's)."""
    return layout.node / "cni" / "ipam-secondary"


def module_dir(layout: Layout) -> Path:
    """The pinned Multus release in the Go module cache."""
    proc = subprocess.run(["go", "mod", "download", "-json", MODULE], cwd=E2E / "build" / "multus",
                          env=go_env(layout), capture_output=True, text=True, check=False)
    folder = json.loads(proc.stdout or "{}").get("Dir", "")
    if proc.returncode or not folder:
        raise MultusError(f"go mod download {MODULE} in e2e/build/multus failed: "
                          f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return Path(folder)


def rbac(layout: Layout) -> list[dict[str, Any]]:
    """Upstream's ServiceAccount, ClusterRole and ClusterRoleBinding `multus`, as the release ships them."""
    path = module_dir(layout) / "deployments" / "multus-daemonset.yml"
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] in kinds]
    if {d["kind"] for d in docs} != kinds:
        raise MultusError(f"{path} lacks one of {', '.join(sorted(kinds))}; check the pinned release")
    return docs


def token_expiry(path: Path) -> float:
    """When the token of a kubeconfig we wrote expires (its JWT `exp`); 0 if there is none."""
    try:
        token = yaml.safe_load(path.read_text())["users"][0]["user"]["token"]
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        return 0.0


def write_kubeconfig(layout: Layout) -> bool:
    """Multus' kubeconfig with a TokenRequest token of its ServiceAccount, renewed a day before it
    expires (a new token on every `up` would rewrite a file Multus reads on each pod). True if written."""
    path = kubeconfig_path(layout)
    if token_expiry(path) - time.time() > TOKEN_RENEW_SECONDS:
        return False
    tekton.account_kubeconfig(layout, path, ACCOUNT, NAMESPACE)
    return True


def conf(layout: Layout) -> dict[str, Any]:
    """Multus' CNI config (its fields: pkg/types/types.go NetConf of the pinned release)."""
    return {
        "cniVersion": "0.4.0", "name": NETWORK, "type": "multus",
        "capabilities": {"portMappings": True},  # handed on to the cluster network's portmap
        # By name, found in confDir: a file path here is loaded through a typed struct that keeps only
        # `type` of each plugin in what Multus caches for DEL, and the bridge's DEL then fails with
        # "no IP ranges specified" (k8sclient.go LoadChainedPluginsFromFile, v4.2.3).
        "clusterNetwork": containerd.NETWORK,
        "confDir": str(containerd.cni_conf_dir(layout)),
        "kubeconfig": str(kubeconfig_path(layout)),
        # Defaults are the host's /opt/cni/bin and /var/lib/cni/multus.
        "binDir": str(containerd.cni_bin_dir(layout)),
        "cniDir": str(layout.node / "cni" / "multus"),
        "logFile": str(log_path(layout)), "logLevel": "verbose",
    }


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically, by rename: containerd reloads the conf dir on every event and must never read half a file."""
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def loaded(layout: Layout) -> tuple[bool, str]:
    """containerd's CRI has loaded Multus as the pods' network (`crictl info`, cniconfig)."""
    proc = containerd.crictl(layout, "info", check=False, timeout=30)
    if proc.returncode:
        return False, proc.stderr.strip()
    networks = (json.loads(proc.stdout).get("cniconfig") or {}).get("Networks") or []
    names = [((n.get("Config") or {}).get("Name")) for n in networks]
    return NETWORK in names, f"containerd's CNI networks: {names}"


def running_bin_dir(layout: Layout) -> str:
    proc = containerd.crictl(layout, "info")
    return str(((json.loads(proc.stdout).get("config") or {}).get("cni") or {}).get("binDir"))


def ping_ref() -> str:
    return f"{registry.ADDRESS}/cssr-e2e/ping:{tasks_image.SUITE}"


def ping_image(layout: Layout) -> dict[str, Any]:
    buildah = Buildah(layout)
    key = content_key(PING_CONTAINERFILE, tasks_image.debian_key())

    def make() -> None:
        base_ref, _ = tasks_image.debian_base(layout, buildah)
        buildah.bud(ping_ref(), key, PING_CONTAINERFILE, PING_CONTAINERFILE.parent, {"BASE": base_ref},
                    volumes=(tasks_image.CA_VOLUME,))

    return ensure(layout, buildah, ping_ref(), key, make)


def up(layout: Layout, *, timeout: float = 60.0) -> dict[str, Any]:
    """Links, RBAC, kubeconfig, then the config (last: containerd uses it as soon as it appears)."""
    began = time.monotonic()
    binary = layout.binary("multus")
    if not binary.exists():
        raise MultusError(f"no {binary}; build it with build.build(layout, ('multus',))")
    wanted_bin = str(containerd.cni_bin_dir(layout))
    if running_bin_dir(layout) != wanted_bin:
        raise MultusError(f"containerd runs with CNI bin_dir {running_bin_dir(layout)}, not {wanted_bin}; "
                          "run node.up (it restarts containerd with the current config.toml)")
    made = [name for name, peer in PARENTS.items() if hostnet.ensure_veth(name, peer)]
    if made:
        say(f"made veth pairs {', '.join(f'{n}/{PARENTS[n]}' for n in made)}, both ends up (macvlan parents)")
    containerd.link_plugins(layout, PLUGINS)
    link = containerd.cni_bin_dir(layout) / "multus"
    if not link.is_symlink() or link.readlink() != binary:
        link.unlink(missing_ok=True)
        link.symlink_to(binary)
    tekton.apply(layout, rbac(layout))
    renewed = write_kubeconfig(layout)
    ipam_dir(layout).mkdir(parents=True, exist_ok=True)
    changed = write_if_changed(conf_path(layout), json.dumps(conf(layout), indent=2) + "\n")
    waited = time.monotonic()
    while not (state := loaded(layout))[0]:
        if time.monotonic() - waited > timeout:
            raise MultusError(f"containerd did not load {conf_path(layout)} within {timeout:.0f} s ({state[1]}); "
                              f"see {layout.logs / 'containerd.log'}")
        time.sleep(0.25)
    seconds = round(time.monotonic() - waited, 2)
    say(f"Multus is the node's CNI network ({'config written' if changed else 'config unchanged'}, token "
        f"{'renewed' if renewed else 'reused'}); containerd had it loaded after {seconds:.1f} s; "
        f"log {log_path(layout)}")
    image = ping_image(layout)
    return {"reused": not (made or changed or renewed), "links_made": made, "config_written": changed,
            "token_renewed": renewed, "seconds_to_loaded": seconds, "ping_image": image,
            "seconds_to_ready": round(time.monotonic() - began, 2)}


def down(layout: Layout) -> dict[str, Any]:
    """The config first (new pods fall back to the bridge network), then our links and the veth pairs."""
    removed = []
    for path in (conf_path(layout), containerd.cni_bin_dir(layout) / "multus",
                 *(containerd.cni_bin_dir(layout) / p for p in PLUGINS)):
        if path.exists() or path.is_symlink():
            path.unlink()
            removed.append(path.name)
    # containerd's libcni caches each pod's result under the network's name in this fixed path, and
    # CNI DEL removes it: what is left once containerd is stopped (node.down) is a crash's, and goes.
    if containerd.crictl(layout, "info", check=False, timeout=10).returncode:
        for path in Path("/var/lib/cni/results").glob(f"{NETWORK}-*"):
            path.unlink()
            removed.append(path.name)
    links = hostnet.delete(list(PARENTS))
    if removed or links:
        say(f"Multus down: removed {', '.join(removed) or 'no file'}; deleted links {', '.join(links) or 'none'}")
    return {"removed": removed, "links_deleted": links}
