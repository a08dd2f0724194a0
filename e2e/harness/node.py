"""Stage C, the node: containerd (containerd.py), the node's own images (node_images.py), the
kubelet and kube-proxy (kubelet.py), started after Stage B; and `down`, which leaves no process,
mount, link, cgroup or iptables chain of them behind.

Order of `down`: the kubelet and kube-proxy stop first (nothing restarts pods any more); then
every pod sandbox is stopped and removed through containerd's CRI (`crictl rmp -af`), so that
containerd itself runs CNI DEL (veth, IPAM, masquerade rules) and unmounts the sandboxes' netns
and shm and the containers' overlay rootfs; then containerd stops. What a crash may have left
(containers in our runc root, shims recorded in our state dir, mounts under .cache/e2e) is
removed after that by what was recorded, never by process name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from . import containerd, kubelet, node_images
from .control_plane import start_or_reuse, wait_until, write_kubeconfig
from .layout import Layout
from .log import say
from .processes import Processes

ORDER = ["containerd", "kubelet", "kube-proxy"]


def up(layout: Layout, *, timeout: float = 180.0) -> dict[str, Any]:
    """Start containerd, import the pause and busybox images, start the kubelet and wait for a
    Ready Node, then kube-proxy. Reuses what runs healthy with the same flags."""
    began = time.monotonic()
    result: dict[str, Any] = {}
    images = [node_images.pause(layout), node_images.busybox(layout)]
    result["images"] = {b.ref: b.summary() for b in images}
    containerd.write_configs(layout, images[0].ref)
    write_kubeconfig(layout.kubeconfig("kubelet"), layout.pki, "kubelet")
    write_kubeconfig(layout.kubeconfig("kube-proxy"), layout.pki, "kube-proxy")
    kubelet.write_configs(layout)
    kubelet.grant_apiserver_kubelet_access(layout)
    processes = Processes(layout.processes)
    argvs = {"containerd": containerd.command(layout), **kubelet.commands(layout)}
    checks = {"containerd": lambda: containerd.ready(layout), "kubelet": kubelet.kubelet_healthy,
              "kube-proxy": kubelet.kube_proxy_healthy}
    restarted = False
    for name in ORDER:
        stale = name == "kubelet" and changed_since_start(processes, name, layout.node / "kubelet.yaml")
        result[name] = start_or_reuse(processes, name, argvs[name], checks[name],
                                      log=layout.logs / f"{name}.log", timeout=timeout, restart=restarted or stale)
        restarted = restarted or not result[name]["reused"]
        if name == "containerd":
            result["imports"] = {b.ref: containerd.import_image(layout, b.archive, b.ref, b.key) for b in images}
        if name == "kubelet":
            node_began = time.monotonic()
            since = processes.records()[name].started
            seconds = wait_until("kubelet", partial(kubelet.node_ready, layout, since), processes, timeout)
            say(f"Node is Ready {seconds:.1f} s after the kubelet answered")
            result["node_ready_seconds"] = round(time.monotonic() - node_began + result[name]["seconds_to_ready"], 2)
    result["seconds_to_ready_node"] = round(time.monotonic() - began, 2)
    return result


def changed_since_start(processes: Processes, name: str, config: Path) -> bool:
    """The config file was written after the recorded process started. Reuse is keyed on argv, and a
    process that reads its config file once (the kubelet, CoreDNS) would keep serving the old one;
    config files are written only when their content changes, so their mtime marks the change."""
    record = processes.records().get(name)
    if record is None or not config.exists() or config.stat().st_mtime <= record.started:
        return False
    say(f"{config} changed after {name} (pid {record.pid}) started; restarting it")
    return True


def _mounts_under(root: Path) -> list[str]:
    """Mount points under `root`, latest first (so that nested mounts go before their parents)."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            points.append(point)
    return list(reversed(points))


def unmount_all(root: Path) -> list[str]:
    done = []
    for point in _mounts_under(root):
        proc = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
        if proc.returncode:
            # Busy (a process we could not stop still holds it): detach it, it goes with the holder.
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        done.append(point)
    return done


def _leftover_containers(layout: Layout) -> list[str]:
    """Containers still in our runc root (only after a crash: CRI removed the others)."""
    root = containerd.runc_root(layout) / "k8s.io"
    if not root.is_dir():
        return []
    proc = subprocess.run(["runc", f"--root={root}", "list", "-q"], capture_output=True, text=True, check=False)
    ids = proc.stdout.split()
    for container in ids:
        subprocess.run(["runc", f"--root={root}", "delete", "--force", container], capture_output=True, check=False)
    return ids


def _leftover_shims(layout: Layout) -> list[int]:
    """Shims our containerd recorded (shim.pid in its state dir) that still run a shim binary."""
    killed = []
    for pid_file in (containerd.folder(layout) / "state" / "io.containerd.runtime.v2.task").glob("*/*/shim.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            if "containerd-shim" in os.readlink(f"/proc/{pid}/exe"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except (OSError, ValueError):
            continue
    return killed


def _remove_cgroups() -> list[str]:
    removed = []
    for top in kubelet.cgroup_dirs():
        if not top.exists():
            continue
        # Children before parents; a cgroup dir is removed with rmdir, never with its pseudo-files.
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
            removed.append(str(top))
        except OSError as e:
            say(f"cgroup {top} not removed: {e}")
    return removed


def _container_log_links(layout: Layout) -> int:
    """The kubelet's /var/log/containers symlinks (a fixed path) that point into our pod logs."""
    folder, ours = Path("/var/log/containers"), str(kubelet.pod_logs(layout))
    count = 0
    for link in folder.glob("*.log") if folder.is_dir() else []:
        if link.is_symlink() and os.readlink(link).startswith(ours):
            link.unlink()
            count += 1
    return count


# Paths the kubelet, containerd and libcni use whatever they are told: the device plugins' socket
# (k8s.io/kubelet deviceplugin DevicePluginPath), libcni's result cache (named <network>-<id>-<if>),
# the shims' sockets and fifos. Only our files go; a folder goes only when that leaves it empty.
FIXED_FOLDERS = ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/lib/cni/results", "/var/lib/cni",
                 "/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc/k8s.io", "/run/containerd/runc",
                 "/run/containerd", "/var/log/containers")


def _fixed_paths(layout: Layout) -> int:
    count = 0
    ours = [Path("/var/lib/kubelet/device-plugins/kubelet.sock"),
            *Path("/var/lib/cni/results").glob(f"{containerd.NETWORK}-*")]
    for path in ours:
        if path.exists() or path.is_symlink():
            path.unlink()
            count += 1
    for folder in map(Path, FIXED_FOLDERS):
        try:
            folder.rmdir()
            count += 1
        except OSError:
            pass  # not there, or holds what is not ours
    return count


def down(layout: Layout) -> dict[str, Any]:
    """Stop the node's processes and remove what they made. Safe to run twice."""
    processes = Processes(layout.processes)
    records = processes.records()
    result: dict[str, Any] = {"stopped": [n for n in ORDER if n in records]}
    for name in ("kubelet", "kube-proxy"):
        processes.stop(name)
    socket_alive = "containerd" in records and processes.alive(records["containerd"])
    if socket_alive and layout.binary("crictl").exists():
        began = time.monotonic()
        proc = containerd.crictl(layout, "rmp", "--all", "--force", check=False, timeout=180)
        say(f"removed the node's pod sandboxes through CRI in {time.monotonic() - began:.1f} s"
            + (f" ({proc.stderr.strip()[-200:]})" if proc.returncode else ""))
    processes.stop("containerd")
    result["leftover_containers"] = _leftover_containers(layout)
    result["leftover_shims"] = _leftover_shims(layout)
    if "kube-proxy" in records:
        try:
            kubelet.proxy_cleanup(layout)
        except kubelet.NodeError as e:
            say(str(e))
    if "kubelet" in records:
        result["kubelet_chains_removed"] = kubelet.kubelet_iptables_cleanup()
    result["unmounted"] = len(unmount_all(layout.cache))
    result["log_links_removed"] = _container_log_links(layout)
    result["host_paths_removed"] = _fixed_paths(layout)
    result["cgroups_removed"] = len(_remove_cgroups())
    if result["stopped"] or any(result[k] for k in ("leftover_containers", "leftover_shims", "unmounted")):
        say(f"node down: stopped {', '.join(result['stopped']) or 'nothing'}; "
            f"{len(result['leftover_containers'])} leftover containers, {len(result['leftover_shims'])} shims, "
            f"{result['unmounted']} mounts, {result['cgroups_removed']} cgroup roots removed")
    return result


def leftovers(layout: Layout, recorded: dict[str, int]) -> list[str]:
    """What `down` must not leave behind: a recorded process still running, a mount under
    .cache/e2e, a link or a cgroup root of ours. Empty when all is gone."""
    found = [f"process {name} (pid {pid})" for name, pid in recorded.items() if Processes._exists(pid)]
    found += [f"mount {point}" for point in _mounts_under(layout.cache)]
    found += [f"cgroup {path}" for path in kubelet.cgroup_dirs() if path.exists()]
    return found
