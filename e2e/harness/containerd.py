"""Stage C's container runtime: Debian's containerd 1.6 and runc, run as a host process with its
own root, state, socket and runc root under .cache/e2e/node/containerd (never /var/lib/containerd
or /run/containerd, which a system containerd would own).

CRI settings, all in config.toml: cgroupfs (cgroup v1; PID 1 is not systemd), the overlayfs
snapshotter, the CNI plugins of Debian in /usr/lib/cni (linked into a bin dir of ours, where
Stage D adds Multus) with the harness's bridge config, the pause image built here as sandbox
image, network namespaces under the state dir (not /var/run/netns), unprivileged ICMP in pods
and the local registry 127.0.0.1:25000 as a plain-http registry (hosts.toml).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from .layout import HOST, NODE_IP, POD_BRIDGE, POD_CIDR, REGISTRY_PORT, Layout
from .log import say

CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
NETWORK = "cssr-e2e"


class ContainerdError(RuntimeError):
    pass


def folder(layout: Layout) -> Path:
    return layout.node / "containerd"


def runc_root(layout: Layout) -> Path:
    return folder(layout) / "runc"


def cni_conf_dir(layout: Layout) -> Path:
    return layout.node / "cni" / "net.d"


def network_file(layout: Layout) -> Path:
    """The cluster network's conflist (Stage D's Multus delegates to it as clusterNetwork)."""
    return cni_conf_dir(layout) / f"10-{NETWORK}.conflist"


def cni_bin_dir(layout: Layout) -> Path:
    """CRI's one CNI bin_dir: links to Debian's plugins, and Stage D's multus (never in /usr/lib/cni)."""
    return layout.node / "cni" / "bin"


def link_plugins(layout: Layout, plugins: tuple[str, ...]) -> None:
    """Debian's plugins of those names, linked into our bin dir."""
    missing = [p for p in plugins if not (CNI_BIN / p).exists()]
    if missing:
        raise ContainerdError(f"CNI plugins missing in {CNI_BIN}: {', '.join(missing)}; run scripts/install-e2e-deps")
    folder = cni_bin_dir(layout)
    folder.mkdir(parents=True, exist_ok=True)
    for name in plugins:
        link = folder / name
        if not link.is_symlink() or link.readlink() != CNI_BIN / name:
            link.unlink(missing_ok=True)
            link.symlink_to(CNI_BIN / name)


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these paths


def config(layout: Layout, sandbox_image: str) -> str:
    base = folder(layout)
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = f'{cri[:-1]}.containerd.runtimes.runc]'
    return f"""version = 2
root = {_toml(str(base / 'root'))}
state = {_toml(str(base / 'state'))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = {_toml(str(layout.containerd_socket))}

[ttrpc]
  address = {_toml(str(layout.containerd_socket) + '.ttrpc')}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml(str(base / 'opt'))}

{cri}
  sandbox_image = {_toml(sandbox_image)}
  netns_mounts_under_state_dir = true
  stream_server_address = "{HOST}"
  stream_server_port = "0"
  enable_selinux = false
  # The sandbox lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the pause container's
  # -998 fails with "failed to update /proc/self/oom_score_adj: Permission denied"); clamp it.
  restrict_oom_score_adj = true
  # net.ipv4.ping_group_range "0 2147483647" in every pod: ping without CAP_NET_RAW (smoke-test's
  # traffic pods drop ALL capabilities), as OpenShift's CRI-O sets it and containerd 2.0 by default.
  enable_unprivileged_icmp = true

{cri[:-1]}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{runc}
  runtime_type = "io.containerd.runc.v2"

{runc[:-1]}.options]
  BinaryName = "/usr/sbin/runc"
  Root = {_toml(str(runc_root(layout)))}
  SystemdCgroup = false

{cri[:-1]}.cni]
  bin_dir = {_toml(str(cni_bin_dir(layout)))}
  conf_dir = {_toml(str(cni_conf_dir(layout)))}
  max_conf_num = 1

{cri[:-1]}.registry]
  config_path = {_toml(str(base / 'certs.d'))}
"""


def write_configs(layout: Layout, sandbox_image: str) -> Path:
    """config.toml, the registry's hosts.toml and the CNI bridge network; returns config.toml."""
    link_plugins(layout, CNI_PLUGINS)
    base = folder(layout)
    for sub in ("root", "state", "opt", "runc"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    # The registry by its loopback name (Tekton's and the stand-in images) and by the node link's
    # address, the name pods push to and pull from (the cssr-init images: world_c.POD_REGISTRY).
    for host in (HOST, NODE_IP):
        hosts = base / "certs.d" / f"{host}:{REGISTRY_PORT}" / "hosts.toml"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(f'server = "http://{host}:{REGISTRY_PORT}"\n\n'
                         f'[host."http://{host}:{REGISTRY_PORT}"]\n  capabilities = ["pull", "resolve"]\n')
    conf_dir = cni_conf_dir(layout)
    conf_dir.mkdir(parents=True, exist_ok=True)
    network = {
        "cniVersion": "0.4.0", "name": NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": POD_BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(layout.node / "cni" / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    network_file(layout).write_text(json.dumps(network, indent=2) + "\n")
    path = base / "config.toml"
    path.write_text(config(layout, sandbox_image))
    return path


def command(layout: Layout) -> list[str]:
    return ["/usr/bin/containerd", f"--config={folder(layout) / 'config.toml'}", "--log-level=warn"]


def ctr(layout: Layout, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ctr", f"--address={layout.containerd_socket}", "--namespace=k8s.io", *args],
                          capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode:
        raise ContainerdError(f"ctr {' '.join(args[:3])} failed: {proc.stderr.strip()[-500:]}")
    return proc


def crictl(layout: Layout, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(layout.binary("crictl")), f"--runtime-endpoint=unix://{layout.containerd_socket}",
                           f"--image-endpoint=unix://{layout.containerd_socket}", "--timeout=60s", *args],
                          capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode:
        raise ContainerdError(f"crictl {' '.join(args[:2])} failed: {proc.stderr.strip()[-500:]}")
    return proc


def ready(layout: Layout) -> tuple[bool, str]:
    """containerd answers on its socket and its CRI plugin reports the runtime and the network ready."""
    if not layout.containerd_socket.exists():
        return False, f"no socket {layout.containerd_socket} yet"
    proc = crictl(layout, "info", check=False, timeout=30)
    if proc.returncode:
        return False, proc.stderr.strip()
    info = json.loads(proc.stdout)
    conditions = {c["type"]: c for c in info["status"]["conditions"]}
    waiting = [f"{t}: {c.get('reason')} {c.get('message')}" for t, c in conditions.items() if not c["status"]]
    waiting += stale(layout, info)
    return not waiting, "; ".join(waiting)


def stale(layout: Layout, info: dict[str, Any]) -> list[str]:
    """Settings of config.toml the running CRI plugin lacks (`crictl info`): containerd reads its config
    once, and node.up reuses it by argv, so a containerd that reports them is restarted (its pods keep
    running in their shims)."""
    running = info.get("config") or {}
    wanted = {"cni binDir": ((running.get("cni") or {}).get("binDir"), str(cni_bin_dir(layout))),
              "enableUnprivilegedICMP": (running.get("enableUnprivilegedICMP"), True)}
    return [f"runs with {name} {has!r}, config.toml says {want!r}" for name, (has, want) in wanted.items()
            if has != want]


def image_digest(layout: Layout, ref: str) -> str | None:
    """The manifest digest containerd holds for `ref` in the k8s.io namespace, or None."""
    proc = ctr(layout, "images", "ls", f"name=={ref}", check=False)
    lines = proc.stdout.strip().splitlines()[1:]
    return lines[0].split()[2] if proc.returncode == 0 and lines else None


def import_image(layout: Layout, archive: Path, ref: str, key: str) -> dict[str, Any]:
    """Import a docker-archive into the k8s.io namespace unless the same archive (by key) already is."""
    stamp = folder(layout) / "imported" / (ref.replace("/", "_").replace(":", "_") + ".key")
    if image_digest(layout, ref) and stamp.exists() and stamp.read_text() == key:
        return {"imported": False, "seconds": 0.0}
    began = time.monotonic()
    ctr(layout, "images", "import", "--no-unpack=false", "--snapshotter=overlayfs", str(archive))
    digest = image_digest(layout, ref)
    if not digest:
        raise ContainerdError(f"ctr images import {archive} did not make {ref} (archive names another image?)")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    seconds = round(time.monotonic() - began, 2)
    say(f"imported {ref} ({digest[:19]}) into containerd in {seconds:.1f} s")
    return {"imported": True, "seconds": seconds, "digest": digest}
