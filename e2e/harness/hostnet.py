"""The host links the cluster needs: a link holding the API server's address (Stage A) and,
made by the CNI bridge plugin, the pods' bridge (Stage C). `remove` deletes both at `down`.

Why a link of its own: the API server must answer pods (through the `kubernetes` Service, which
kube-proxy DNATs to the advertised address) and the host alike; 127.0.0.1 is the pod's own
loopback inside a pod, and Endpoints refuse loopback addresses. A /32 on a link of the host is
local to the host (the kernel answers it like 127.0.0.1) and routed to from the pod bridge. The
link is a bridge without ports: this sandbox's kernel has no dummy driver (`ip link add ... type
dummy` fails with "Unknown device type"), and a bridge is there wherever the CNI bridge works.
"""

from __future__ import annotations

import json
import subprocess

from .layout import NODE_IP, NODE_LINK, POD_BRIDGE
from .log import say

LINKS = (POD_BRIDGE, NODE_LINK)


class NetError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise NetError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def addresses(name: str) -> list[str]:
    shown = json.loads(_ip("-j", "addr", "show", "dev", name).stdout or "[]")
    return [a["local"] for link in shown for a in link.get("addr_info", [])]


def ensure_node_link() -> bool:
    """The link with the API server's address, up; True if it had to be made."""
    made = False
    if not link_exists(NODE_LINK):
        _ip("link", "add", NODE_LINK, "type", "bridge")
        made = True
    if NODE_IP not in addresses(NODE_LINK):
        _ip("addr", "add", f"{NODE_IP}/32", "dev", NODE_LINK)
        made = True
    _ip("link", "set", NODE_LINK, "up")
    if made:
        say(f"made link {NODE_LINK} (a bridge without ports) with {NODE_IP}/32, the API server's address")
    return made


def ensure_veth(name: str, peer: str) -> bool:
    """A veth pair, both ends up: a link with a carrier (for macvlan parents) where no dummy driver
    exists. True if it had to be made."""
    made = not link_exists(name)
    if made:
        _ip("link", "add", name, "type", "veth", "peer", "name", peer)
    for end in (name, peer):
        _ip("link", "set", end, "up")
    return made


def delete(names: list[str]) -> list[str]:
    """Delete those of the links that exist (a veth's peer goes with it); returns the deleted."""
    gone = [name for name in names if link_exists(name)]
    for name in gone:
        _ip("link", "delete", name)
    return gone


def remove() -> list[str]:
    """Delete the links the harness and the CNI bridge plugin made (the pods' veths go with their
    network namespaces)."""
    removed = []
    for name in LINKS:
        if link_exists(name):
            _ip("link", "delete", name)
            removed.append(name)
    if removed:
        say(f"deleted links {', '.join(removed)}")
    return removed
