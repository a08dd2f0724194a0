"""One router pod's health through its own API, judged as 128T's stage_check judges it.

stage_check's DeviceState test fails only when `operationalStatus == 'OPER_DOWN'`, and its
GatewayPing test leaves out interfaces whose `adminStatus == 'ADMIN_DOWN'` (config.json): an
unused port reports OPER_UNKNOWN and is no fault. The smoke test knows more than stage_check,
namely which device-interfaces carry the pod's networks (the running configuration binds them
by `pciAddress` for VFs, by `targetInterface` for kernel interfaces such as macvlan), so:

- ADMIN_DOWN device-interfaces are skipped (and named in the log);
- the device-interfaces behind the pod's networks must be OPER_UP;
- any other fails only when OPER_DOWN;
- every process must be RUNNING.

A router that is still starting (503s, GraphQL errors, interfaces coming up) is `NotYet`, so
that the caller's wait polls it until its deadline.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cluster import Cluster
from .errors import ConfigError
from .log import Log
from .smoke_networks import Attachment
from .ssr_api import ConfiguredInterface, Credentials, DeviceInterface, Process, SsrApi, SsrUnavailable
from .waits import NotYet

ADMIN_DOWN = "ADMIN_DOWN"
OPER_UP = "OPER_UP"
OPER_DOWN = "OPER_DOWN"


def load_credentials(cluster: Cluster, log: Log, *, namespace: str, secret_name: str, folder: str) -> Credentials:
    """From files (the Secret mounted by the Task), else from the Secret through the API."""
    secret = f"Secret {namespace}/{secret_name}"
    if folder:
        files = Path(folder) / "username", Path(folder) / "password"
        if all(f.is_file() for f in files):
            username, password = (f.read_text(encoding="utf-8").rstrip("\r\n") for f in files)
            log.info(f"SSR API user {username}, from the files in {folder}")
            return Credentials(username, password, source=f"the files username and password in {folder}")
        log.info(f"no username and password files in {folder}; reading {secret} through the API")
    found = cluster.get_or_none("v1", "secrets", secret_name, namespace)
    if found is None:
        raise ConfigError(f"could not read the SSR API credentials: {secret} not found; create it with `oc create "
                          f"secret generic {secret_name} -n {namespace} "
                          "--from-literal=username=admin --from-file=password=<file>`")
    data = found.get("data") or {}
    values = {}
    for key in ("username", "password"):
        try:
            values[key] = base64.b64decode(data.get(key) or "", validate=True).decode("utf-8").rstrip("\r\n")
        except (binascii.Error, UnicodeDecodeError):
            values[key] = ""
        if not values[key]:
            raise ConfigError(f"could not read the SSR API credentials: {secret} has no usable key {key}; it needs "
                              "the keys username and password")
    log.info(f"SSR API user {values['username']}, from {secret}")
    return Credentials(values["username"], values["password"], source=secret)


@dataclass(frozen=True)
class Health:
    version: str  # "" when the API does not say
    processes: list[Process]
    up: list[DeviceInterface]  # OPER_UP
    skipped: list[DeviceInterface]  # ADMIN_DOWN
    behind: dict[tuple[str, str], Attachment]  # (node, device-interface) -> the pod network it carries
    unbound: list[Attachment]  # pod networks no device-interface binds (kernel interfaces without targetInterface)
    pci: dict[str, str]  # PCI address -> device-interface, from the running configuration


def carriers(configured: Sequence[ConfiguredInterface],
             attachments: Sequence[Attachment]) -> dict[tuple[str, str], Attachment]:
    """The device-interfaces that carry the pod's networks: bound to its VF, or to its kernel interface."""
    found = {}
    for c in configured:
        for a in attachments:
            if (a.pci_address and c.pci_address == a.pci_address) or (
                    not a.pci_address and c.target_interface == a.interface):
                found[(c.node, c.name)] = a
    return found


class RouterProbe:
    """One router pod's API: logs in once, reads the version once, then judges its health on each `check`."""

    def __init__(self, api: SsrApi, credentials: Credentials, *, pod: str, namespace: str, router: str,
                 attachments: Sequence[Attachment]) -> None:
        self.api, self.credentials = api, credentials
        self.pod, self.namespace, self.router = pod, namespace, router
        self.attachments = list(attachments)
        self.version: str | None = None

    def check(self) -> Health:
        what = f"router pod {self.namespace}/{self.pod} healthy"
        logs = f"`oc logs -n {self.namespace} {self.pod}`"
        try:
            if not self.api.token:
                self.api.login(self.credentials)
            if self.version is None:
                self.version = self.api.version()
            processes = self.api.processes(self.router)
            interfaces = self.api.device_interfaces(self.router)
            configured = self.api.configured_interfaces(self.router)
        except SsrUnavailable as e:
            raise NotYet(f"router {self.pod} not healthy yet ({e.reason})", what=what,
                         reason=str(e).split(": ", 1)[-1],
                         hint=f"check that the 128T service started ({logs}), or raise timeout") from None
        if not processes or not interfaces:
            missing = "processes" if not processes else "device interfaces"
            router = f" {self.router}" if self.router else ""
            raise NotYet(f"router {self.pod} not healthy yet (no {missing} reported)", what=what,
                         reason=f"the router{router} reports no {missing}",
                         hint="check router-name and the router's configuration (device-interface per network)")
        behind = carriers(configured, self.attachments)
        problems = self._problems(processes, interfaces, behind)
        if problems:
            short = ", ".join(p[0] for p in problems)
            hints = list(dict.fromkeys(p[2] for p in problems))
            raise NotYet(f"router {self.pod} not healthy yet ({short})", what=what,
                         reason="; ".join(p[1] for p in problems), hint="; ".join(hints).replace("{logs}", logs))
        bound = set(behind.values())
        return Health(version=self.version or "", processes=processes,
                      up=[i for i in interfaces if i.admin != ADMIN_DOWN and i.operational == OPER_UP],
                      skipped=[i for i in interfaces if i.admin == ADMIN_DOWN], behind=behind,
                      unbound=[a for a in self.attachments if not a.pci_address and a not in bound],
                      pci=pci_addresses_of(configured))

    @staticmethod
    def _problems(processes: list[Process], interfaces: list[DeviceInterface],
                  behind: dict[tuple[str, str], Attachment]) -> list[tuple[str, str, str]]:
        """(progress, reason, hint) for each thing that is not healthy yet."""
        link = "check the link behind each interface and `show device-interface` on the router"
        problems = []
        reported = {(i.node, i.name) for i in interfaces}
        for (node, name), a in behind.items():
            if (node, name) not in reported:
                problems.append((f"interface {name} not reported",
                                 f"device interface {name} (node {node}), configured for {a.network} on "
                                 f"{a.interface}, is not in the router's state", link))
        for i in interfaces:
            carried = behind.get((i.node, i.name))
            if i.admin == ADMIN_DOWN or i.operational == OPER_UP:
                continue
            if carried is None and i.operational != OPER_DOWN:
                continue  # stage_check fails only on OPER_DOWN: an unused port reports OPER_UNKNOWN
            where = f"node {i.node}" + (f", {carried.network} on {carried.interface}" if carried else "")
            admin = f", admin {i.admin}" if i.admin else ""
            problems.append((f"interface {i.name} {i.operational}",
                             f"device interface {i.name} ({where}) is {i.operational}{admin}", link))
        for p in processes:
            if p.status != "RUNNING":
                problems.append((f"process {p.name} {p.status}", f"process {p.name} (node {p.node}) is {p.status}",
                                 "check `show system processes` on the router and {logs}"))
        return problems


def pci_addresses_of(configured: Sequence[ConfiguredInterface]) -> dict[str, str]:
    return {c.pci_address: c.name for c in configured if c.pci_address}

