"""The Machine Config Operator stand-in of the scripted upgrade: cssr_tasks.sim.upgrades' rollout,
written to the real API server.

The steps are the simulator's (`Upgrades`: the pool's spec points at the target rendered
MachineConfig, then node by node desiredConfig, Working, the new kernel in nodeInfo, Done, and the
pool's counts; last the pool's status.configuration and conditions), so the real cluster and the
simulated one see the same MCO. What the real API adds: the status of a Node and of a pool goes
through their status subresource; the objects the rollout reads back carry server fields
(resourceVersion, managedFields) that an apply must not send.

Time is the one thing the simulator leaves out. A real node drains, writes its config and reboots
before it reports the new kernel: 5 to 15 minutes on bare metal. The stand-in moves the first node
`first_node_after` seconds after the pool's target changed (the default, 150 s, is far shorter than
a real reboot) and the next ones `between_nodes` apart; `Rollout.timeline` records when each step
happened, which the upgrade test compares with when the target kernel's modules were verified.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cssr_tasks.cluster import Cluster
from cssr_tasks.sim.upgrades import Releases, Upgrades

from .log import say

FIELD_MANAGER = "machine-config-operator-standin"
PLURALS = {"Node": "nodes", "MachineConfigPool": "machineconfigpools", "MachineConfig": "machineconfigs"}
SERVER_FIELDS = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation")


class ApiStore:
    """`put` and `get` of the simulated cluster, on the real API server as the MCO stand-in."""

    def __init__(self, admin: Cluster) -> None:
        self.admin = admin

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind, api, name = obj["kind"], obj["apiVersion"], obj["metadata"]["name"]
        body = {k: v for k, v in obj.items() if k != "status"}
        body["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in SERVER_FIELDS}
        if "ownerReferences" in body["metadata"]:
            body["metadata"]["ownerReferences"] = self._owners(body["metadata"]["ownerReferences"])
        applied = self.admin.apply(body, field_manager=FIELD_MANAGER)
        status = obj.get("status")
        if status and kind in ("Node", "MachineConfigPool"):
            # A Node's conditions are the stand-in kubelet's (operators.NodeLeases): the MCO writes
            # only what an RHCOS reboot changes, nodeInfo.
            patch = {"nodeInfo": status.get("nodeInfo", {})} if kind == "Node" else status
            applied = self.admin.patch(api, PLURALS[kind], name, {"status": patch}, subresource="status",
                                       patch_type="merge")
        return applied

    def _owners(self, references: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The owners with their real uids. The simulator's made-up uid would make the garbage
        collector delete a rendered MachineConfig at once (its owner "does not exist"); a pool
        not made yet owns nothing (the rendered config is put again once it exists)."""
        owners = []
        for ref in references:
            found = self.get(ref["apiVersion"], ref["kind"], ref["name"]) if ref["kind"] in PLURALS else None
            if found is not None:
                owners.append({**ref, "uid": found["metadata"]["uid"]})
        return owners

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.admin.get_or_none(api_version, PLURALS[kind], name, namespace)


@dataclass
class Rollout:
    """One scripted rollout of a pool to a target rendered config, with the time of each step."""

    mco: Upgrades
    pool: str
    target: str
    first_node_after: float = 150.0
    between_nodes: float = 10.0
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def run(self, *, during: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
        """The whole rollout; `during(step)` is called after each step (a test acts mid-update there)."""
        began = time.monotonic()
        steps = self.mco.roll(self.pool, self.target)
        self._mark(next(steps), began)
        if during:
            during(self.timeline[-1]["step"])
        for i, _ in enumerate(self.mco.members[self.pool]):
            wait = self.first_node_after if i == 0 else self.between_nodes
            say(f"MCO stand-in: pool {self.pool}: node {i + 1} of {len(self.mco.members[self.pool])} drains and "
                f"reboots; it reports the target's kernel in {wait:.0f} s")
            time.sleep(wait)
            self._mark(next(steps), began)
            if during:
                during(self.timeline[-1]["step"])
        for step in steps:
            self._mark(step, began)
        return self.timeline

    def _mark(self, step: str, began: float) -> None:
        self.timeline.append({"step": step, "at": time.time(), "seconds": round(time.monotonic() - began, 1)})
        say(f"MCO stand-in: {step} ({self.timeline[-1]['seconds']:.0f} s into the rollout)")


def stand_in(admin: Cluster, releases: Releases) -> Upgrades:
    return Upgrades(ApiStore(admin), releases)
