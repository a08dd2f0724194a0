"""Scripted MachineConfig rollouts for the simulated cluster, as the Machine Config Operator does them.

    mco = Upgrades(sim)
    mco.add_pool("worker", 3)                        # nodes, a pool and its rendered MachineConfig
    target = mco.render("worker", release="4.17")    # a new rendered config (new osImageURL)
    for step in mco.roll("worker", target, flaps=True):
        ...                                          # the cluster is mid-update here

A rollout: the pool's spec points at the target; then node by node, desiredConfig changes, the
node goes Working, reboots into the target's kernel (nodeInfo.kernelVersion, osImage and bootID
change) and comes back Done on the target; the pool's counts follow; last, status.configuration
becomes the target and the conditions settle. `flaps=True` adds the transient condition flips
seen on real clusters (Updated=True while nodes still update, a short Degraded). A config with
the same osImageURL and kernelType (a chrony file) reboots nothing into a new kernel.

The store is anything with the simulated cluster's `put(obj)` and `get(api, kind, name)`: the e2e
tier passes one that writes to a real API server (e2e/harness/mco.py), with its own release table
(RHCOS version and kernels per release, in the shape of fixtures.RELEASES).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from . import fixtures as fx

MCO_API = "machineconfiguration.openshift.io/v1"
CURRENT = "machineconfiguration.openshift.io/currentConfig"
DESIRED = "machineconfiguration.openshift.io/desiredConfig"
STATE = "machineconfiguration.openshift.io/state"
RHCOS_REPOSITORY = "quay.io/openshift-release-dev/ocp-v4.0-art-dev"


Releases = Mapping[str, tuple[str, str, str]]  # release -> (RHCOS version, kernel, realtime kernel)


class Store(Protocol):
    def put(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> dict[str, Any] | None: ...


def os_image_url(release: str, releases: Releases = fx.RELEASES) -> str:
    return f"{RHCOS_REPOSITORY}@{fx.digest('rhel-coreos ' + releases[release][0])}"


def kernel_of(release: str, kernel_type: str, releases: Releases = fx.RELEASES) -> str:
    _, kernel, rt = releases[release]
    return rt if kernel_type == "realtime" else kernel


class Upgrades:
    """The Machine Config Operator's side of a rollout, one step at a time."""

    def __init__(self, sim: Store, releases: Releases = fx.RELEASES) -> None:
        self.sim = sim
        self.releases = releases
        self.configs: dict[str, dict[str, Any]] = {}  # rendered name -> {release, kernel_type}
        self.members: dict[str, list[str]] = {}  # pool -> node names

    # -- building the cluster --

    def add_pool(self, name: str, nodes: int, *, release: str = "4.16", kernel_type: str = "default",
                 roles: tuple[str, ...] = (), prefix: str | None = None) -> str:
        """A pool selecting `node-role.kubernetes.io/<name>=`, its nodes (also labelled with
        `roles`, as worker-cnf nodes keep the worker label) and its rendered config."""
        config = self.render(name, release=release, kernel_type=kernel_type)
        labels = {f"node-role.kubernetes.io/{role}": "" for role in roles}
        rhcos = self.releases[release][0]
        self.members[name] = []
        for i in range(nodes):
            node_name = f"{prefix or name}-{i}"
            kernel = kernel_of(release, kernel_type, self.releases)
            self.sim.put(fx.node(node_name, kernel=kernel, rhcos=rhcos, role=name, labels=labels, config=config))
            self.members[name].append(node_name)
        self.sim.put(fx.pool(name, machine_count=nodes, config=config))
        return config

    def render(self, pool: str, *, release: str = "4.16", kernel_type: str = "default",
               files: tuple[str, ...] = ()) -> str:
        """A rendered MachineConfig; `files` stand for any change that keeps the kernel (chrony)."""
        seed = json.dumps([pool, release, kernel_type, sorted(files)])
        name = f"rendered-{pool}-{hashlib.sha256(seed.encode()).hexdigest()[:32]}"
        self.configs[name] = {"release": release, "kernel_type": kernel_type}
        self.sim.put({
            "apiVersion": MCO_API, "kind": "MachineConfig",
            "metadata": {
                "name": name,
                "annotations": {"machineconfiguration.openshift.io/generated-by-controller-version": "sim",
                                "machineconfiguration.openshift.io/release-image-version": release},
                "ownerReferences": [{"apiVersion": MCO_API, "kind": "MachineConfigPool", "name": pool,
                                     "uid": hashlib.md5(pool.encode()).hexdigest(), "controller": True}],
            },
            "spec": {
                "osImageURL": os_image_url(release, self.releases),
                "kernelType": kernel_type,
                "kernelArguments": [],
                "extensions": [],
                "fips": False,
                "config": {"ignition": {"version": "3.4.0"}, "storage": {"files": [
                    {"path": path, "mode": 420, "overwrite": True,
                     "contents": {"source": "data:," + hashlib.sha256(path.encode()).hexdigest()}}
                    for path in sorted(files)]}},
            },
        })
        return name

    # -- a rollout, step by step --

    def pool(self, name: str) -> dict[str, Any]:
        found = self.sim.get(MCO_API, "MachineConfigPool", name)
        if found is None:
            raise KeyError(f"pool {name} is not in the simulated cluster")
        return found

    def set_conditions(self, name: str, *, updated: bool, updating: bool, degraded: bool = False,
                       **counts: int) -> None:
        pool = self.pool(name)
        status = pool["status"]
        values = {"Updated": updated, "Updating": updating, "Degraded": degraded, "NodeDegraded": degraded}
        for condition in status["conditions"]:
            if condition["type"] in values:
                condition["status"] = "True" if values[condition["type"]] else "False"
        status["degradedMachineCount"] = 1 if degraded else 0
        for key, value in counts.items():
            status[key] = value
        self.sim.put(pool)

    def start(self, name: str, target: str) -> None:
        """The render controller points the pool at the target; Updating soon follows."""
        pool = self.pool(name)
        pool["spec"]["configuration"]["name"] = target
        self.sim.put(pool)
        self.set_conditions(name, updated=False, updating=True, updatedMachineCount=0)

    def update_node(self, name: str, node_name: str, target: str) -> None:
        """Drain, write the config, reboot into the target's kernel, come back Done."""
        node = self.node(node_name)
        node["metadata"]["annotations"][DESIRED] = target
        node["metadata"]["annotations"][STATE] = "Working"
        self.sim.put(node)
        self.set_conditions(name, updated=False, updating=True, unavailableMachineCount=1)
        spec = self.configs[target]
        info = node["status"]["nodeInfo"]
        info["kernelVersion"] = kernel_of(spec["release"], spec["kernel_type"], self.releases)
        info["osImage"] = fx.os_image(self.releases[spec["release"]][0])
        info["bootID"] = hashlib.md5(f"boot {node_name} {target}".encode()).hexdigest()
        node["metadata"]["annotations"][CURRENT] = target
        node["metadata"]["annotations"][STATE] = "Done"
        self.sim.put(node)
        done = sum(1 for n in self.members[name]
                   if (self.node(n)["metadata"]["annotations"].get(CURRENT) == target))
        self.set_conditions(name, updated=False, updating=True, updatedMachineCount=done,
                            readyMachineCount=done, unavailableMachineCount=0)

    def finish(self, name: str, target: str) -> None:
        pool = self.pool(name)
        pool["status"]["configuration"]["name"] = target
        self.sim.put(pool)
        count = len(self.members[name])
        self.set_conditions(name, updated=True, updating=False, updatedMachineCount=count,
                            readyMachineCount=count, unavailableMachineCount=0)

    def node(self, name: str) -> dict[str, Any]:
        found = self.sim.get("v1", "Node", name)
        if found is None:
            raise KeyError(f"node {name} is not in the simulated cluster")
        return found

    def roll(self, name: str, target: str, *, flaps: bool = False) -> Iterator[str]:
        """Every step of a rollout; yields after each, so that a test can act mid-update."""
        self.start(name, target)
        yield f"{name}: started towards {target}"
        members = self.members[name]
        for i, node_name in enumerate(members):
            self.update_node(name, node_name, target)
            yield f"{name}: node {node_name} updated"
            if flaps and i == 0:
                # Seen on real clusters between nodes: Updated flips to True for a moment, and a
                # node's drain timeout marks the pool Degraded until the next sync.
                self.set_conditions(name, updated=True, updating=False, updatedMachineCount=len(members))
                yield f"{name}: conditions flapped to Updated"
                self.set_conditions(name, updated=False, updating=True, degraded=True, updatedMachineCount=i + 1)
                yield f"{name}: conditions flapped to Degraded"
                self.set_conditions(name, updated=False, updating=True, updatedMachineCount=i + 1)
        self.finish(name, target)
        yield f"{name}: settled on {target}"
        if flaps:
            self.set_conditions(name, updated=False, updating=True)
            yield f"{name}: conditions flapped to Updating after settling"
            self.set_conditions(name, updated=True, updating=False)
            yield f"{name}: settled again"

    def upgrade(self, name: str, target: str, *, flaps: bool = False) -> None:
        for _ in self.roll(name, target, flaps=flaps):
            pass
