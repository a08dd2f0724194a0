"""STAND-IN for Juniper's cSSR router image (quay.io/juniper-128t/128t-*, not public).

It serves the fake SSR REST/GraphQL API of cssr_tasks.sim.ssr, as the smoke tests and `make demo`
do, over HTTPS on 0.0.0.0:$SSR_API_PORT (443 by default) with a self-signed certificate made at
start, and the sim's credentials: one device-interface per secondary network of the pod (net1,
net2, ..., as Multus names them; targetInterface in the running configuration), OPER_UP when its
link is up at start, every process RUNNING. It forwards IPv4 between the pod's networks as the
router does, but in the pod's kernel (the SSR forwards in DPDK): net.ipv4.ip_forward=1 in the pod's
network namespace, which only a privileged container may write (runc mounts /proc/sys read-only
otherwise; a pod sysctl would need the kubelet's --allowed-unsafe-sysctls). Unprivileged, or
without a secondary network, it serves the API and says that it does not forward. SIGTERM (or
`service 128T stop`, the StatefulSet's preStop) stops it.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from pytest_httpserver import HTTPServer

from cssr_tasks.sim.router import Net
from cssr_tasks.sim.ssr import FakeSsr, self_signed_certificate, server_context

FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")


def forward(interfaces: list[str]) -> str:
    # Without a secondary network this is no router's network namespace: under `buildah run
    # --isolation chroot` (tests/test_images.py) it would be the host's, whose sysctl is not ours.
    if not interfaces:
        return "forwards nothing: no secondary network"
    try:
        FORWARDING.write_text("1\n")
    except OSError as e:
        return f"does not forward: cannot write {FORWARDING} ({e.strerror}; run the container privileged)"
    return "forwards IPv4 between its networks (net.ipv4.ip_forward=1)"


def operational(interface: str) -> str:
    """The link's state as the SSR reports a device-interface's (a macvlan without a carrier below is down)."""
    state = Path(f"/sys/class/net/{interface}/operstate").read_text().strip()
    return "OPER_UP" if state == "up" else "OPER_DOWN"


def main() -> None:
    stop = threading.Event()
    # First thing: as PID 1 of its container it would ignore SIGTERM (the preStop hook's signal)
    # until it has a handler.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port = int(os.environ.get("SSR_API_PORT", "443"))
    interfaces = sorted(name for name in os.listdir("/sys/class/net") if name.startswith("net"))
    folder = Path("/run/ssr-standin")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "serving").unlink(missing_ok=True)  # a restarted container's old layer could hold one
    server = HTTPServer(host="0.0.0.0", port=port, ssl_context=server_context(*self_signed_certificate(folder)))
    server.start()
    ssr = FakeSsr(server, [Net(name=name, interface=name) for name in interfaces])
    ssr.interfaces.update({name: operational(interface) for name, interface in ssr.linux.items()})
    states = ", ".join(f"{ssr.linux[name]} {state}" for name, state in ssr.interfaces.items())
    print(f"ssr stand-in: fake SSR API on https://0.0.0.0:{port}/ with device-interfaces for {states or 'no'} "
          f"secondary networks; it {forward(interfaces)}", flush=True)
    (folder / "serving").write_text(f"{port}\n")  # what `service 128T status` reads
    stop.wait()
    server.stop()
    print("ssr stand-in: stopped", flush=True)


if __name__ == "__main__":
    main()
