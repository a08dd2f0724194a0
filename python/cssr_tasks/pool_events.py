"""What the pool watcher decides, as pure functions of what it sees.

From a MachineConfigPool, its nodes, the rendered MachineConfigs and the state recorded so far,
`assess` says which events to send and why: `pool-updating` when the target rendered config
changes the kernel (osImageURL or kernelType), `kernel-changed` when a settled pool runs a
kernel the last deployment did not cover, nothing for a change that keeps the kernel.
No I/O here: watch_pools.py feeds it and delivers what it decides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import kernels, selectors

CURRENT_CONFIG = "machineconfiguration.openshift.io/currentConfig"
DESIRED_CONFIG = "machineconfiguration.openshift.io/desiredConfig"
MCO_STATE = "machineconfiguration.openshift.io/state"

POOL_UPDATING = "pool-updating"
KERNEL_CHANGED = "kernel-changed"
EVENT_TYPES = (POOL_UPDATING, KERNEL_CHANGED)
# Sent records kept per pool and event type; older ones are pruned from the state ConfigMap.
KEEP_RECORDS = 20


# -- what the watcher decides from ------------------------------------------------------------


@dataclass(frozen=True)
class KernelSet:
    """The kernels a deployment covered; `versions` is None when only the id was recorded."""

    id: str
    versions: frozenset[str] | None
    source: str

    def covers(self, running: Collection[str]) -> bool:
        if self.versions is not None:
            return set(running) <= self.versions
        return kernels.kernel_set_id(running) == self.id


@dataclass(frozen=True)
class State:
    """What the decision needs from the cluster besides pools and nodes.

    `sent`: state key -> record of every event already delivered (the watcher's ConfigMap).
    `deployed`: pool -> the kernel set of the last deployment (cssr-deploy-state, else the
    watcher's baseline).
    """

    sent: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    deployed: Mapping[str, KernelSet] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    type: str
    pool: str
    current_config: str
    target_config: str
    os_image_url: str
    kernel_type: str
    kernel_set_id: str
    kernel_versions: tuple[str, ...]

    @property
    def key(self) -> str:
        """The state ConfigMap key: event type + pool + rendered config."""
        return f"{self.type}.{self.pool}.{self.target_config}"

    @property
    def idempotency_key(self) -> str:
        """The same key, hashed to fit a label value; the PipelineRun carries it."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]

    @property
    def kernel(self) -> str:
        """What this event is about, kernel-wise: a second config with the same kernel is no news."""
        if self.type == POOL_UPDATING:
            return f"{self.os_image_url}|{self.kernel_type}"
        return self.kernel_set_id

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type, "pool": self.pool, "idempotencyKey": self.idempotency_key,
            "currentConfig": self.current_config, "targetConfig": self.target_config,
            "osImageURL": self.os_image_url, "kernelType": self.kernel_type,
            "kernelSetId": self.kernel_set_id, "kernelVersions": list(self.kernel_versions),
            "source": "cssr-watch-pools", "version": "1",
        }

    def describe(self) -> str:
        if self.type == POOL_UPDATING:
            return (f"{self.type} for pool {self.pool}: {self.current_config} -> {self.target_config} "
                    f"(kernelType {self.kernel_type}, osImageURL {self.os_image_url})")
        return f"{self.type} for pool {self.pool} on {self.target_config}: kernels {', '.join(self.kernel_versions)}"


@dataclass(frozen=True)
class Assessment:
    events: list[Event]
    reason: str


# -- pure decisions ---------------------------------------------------------------------------


def condition(pool: Mapping[str, Any], kind: str) -> str:
    for item in (pool.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return str(item.get("status") or "Unknown")
    return "Unknown"


def configs_of(pool: Mapping[str, Any]) -> tuple[str, str]:
    """(current, target) rendered config names."""
    current = ((pool.get("status") or {}).get("configuration") or {}).get("name") or ""
    target = ((pool.get("spec") or {}).get("configuration") or {}).get("name") or ""
    return str(current), str(target)


def pool_of_config(name: str) -> str | None:
    """`rendered-worker-cnf-<hash>` -> `worker-cnf`."""
    if not name.startswith("rendered-") or "-" not in name[len("rendered-"):]:
        return None
    return name[len("rendered-"):].rsplit("-", 1)[0]


def pool_nodes(pool: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Nodes the pool selects. A node carrying another pool's rendered config belongs to that
    pool (a worker-cnf node also has the worker label, and MCO gives it to worker-cnf)."""
    name = (pool.get("metadata") or {}).get("name", "")
    requirements = selectors.parse(selectors.from_label_selector((pool.get("spec") or {}).get("nodeSelector")))
    found = []
    for node in nodes:
        meta = node.get("metadata") or {}
        if not all(r.matches(meta.get("labels") or {}) for r in requirements):
            continue
        annotations = meta.get("annotations") or {}
        owner = pool_of_config(annotations.get(CURRENT_CONFIG) or annotations.get(DESIRED_CONFIG) or "")
        if owner is None or owner == name:
            found.append(node)
    return found


def node_kernel(node: Mapping[str, Any]) -> str:
    return kernels.normalize(str(((node.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion") or ""))


def kernel_identity(config: Mapping[str, Any]) -> tuple[str, str]:
    """(osImageURL, kernelType) of a rendered MachineConfig: all that decides its kernel."""
    spec = config.get("spec") or {}
    return str(spec.get("osImageURL") or ""), str(spec.get("kernelType") or "") or "default"


def settled(pool: Mapping[str, Any], members: Sequence[Mapping[str, Any]]) -> str | None:
    """None when the pool has settled; otherwise why not. Conditions flap during an update, so
    the counts, the config names and every node's MCO annotations must agree as well."""
    status = pool.get("status") or {}
    current, target = configs_of(pool)
    conditions = {kind: condition(pool, kind) for kind in ("Updated", "Updating", "Degraded")}
    if conditions != {"Updated": "True", "Updating": "False", "Degraded": "False"}:
        return "not settled (" + ", ".join(f"{k}={v}" for k, v in conditions.items()) + ")"
    if status.get("updatedMachineCount") != status.get("machineCount"):
        return f"not settled ({status.get('updatedMachineCount')}/{status.get('machineCount')} machines updated)"
    if current != target:
        return f"not settled (target {target} is not yet current)"
    if not members:
        return "no node matches the pool's nodeSelector"
    for node in members:
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        name = node["metadata"]["name"]
        if CURRENT_CONFIG in annotations and (annotations.get(CURRENT_CONFIG) != current
                                              or annotations.get(DESIRED_CONFIG, current) != current
                                              or annotations.get(MCO_STATE, "Done") != "Done"):
            return f"not settled (node {name} is {annotations.get(MCO_STATE)} on {annotations.get(CURRENT_CONFIG)})"
        if not node_kernel(node):
            return f"node {name} reports no kernel version"
    return None


def already_sent(state: State, event: Event) -> str | None:
    """Why this event needs no sending, or None: its key was delivered, or an event of the same
    type and kernel was (a chrony change on top of an update is no second kernel change)."""
    if event.key in state.sent:
        return f"{event.type} for {event.target_config} already sent (event {state.sent[event.key].get('eventID')})"
    for record in state.sent.values():
        if (record.get("pool"), record.get("type"), record.get("kernel")) == (event.pool, event.type, event.kernel):
            return f"{event.type} for the same kernel already sent with {record.get('config')}"
    return None


def assess(pool: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
           rendered_configs: Mapping[str, Mapping[str, Any] | None], state: State) -> Assessment:
    """The events one pool calls for, and a sentence saying why (pure: no I/O)."""
    name = pool["metadata"]["name"]
    current, target = configs_of(pool)
    members = pool_nodes(pool, nodes)
    running = kernels.kernel_set(k for k in (node_kernel(n) for n in members) if k)
    set_id = kernels.kernel_set_id(running)

    if target and current and target != current:
        old, new = rendered_configs.get(current), rendered_configs.get(target)
        if old is None or new is None:
            missing = current if old is None else target
            return Assessment([], f"updating {current} -> {target}; waiting to read MachineConfig {missing}")
        (old_image, old_type), (new_image, new_type) = kernel_identity(old), kernel_identity(new)
        if (old_image, old_type) == (new_image, new_type):
            return Assessment([], f"updating {current} -> {target}; same osImageURL and kernelType, so the "
                                  "kernel stays: no event")
        event = Event(POOL_UPDATING, name, current, target, new_image, new_type, set_id, tuple(running))
        why = f"kernelType {old_type} -> {new_type}" if old_type != new_type else "osImageURL changes"
        skip = already_sent(state, event)
        if skip:
            return Assessment([], f"updating {current} -> {target} ({why}); {skip}")
        return Assessment([event], f"updating {current} -> {target} ({why}): {POOL_UPDATING}")

    unsettled = settled(pool, members)
    if unsettled:
        return Assessment([], unsettled)
    deployed = state.deployed.get(name)
    where = f"kernels {', '.join(running)} (set {set_id})"
    if deployed is None:
        return Assessment([], f"settled on {current} with {where}; no deployment recorded yet")
    if deployed.covers(running):
        return Assessment([], f"settled on {current} with {where}; covered by the last deployment "
                              f"(set {deployed.id}, {deployed.source})")
    image, kernel_type = kernel_identity(rendered_configs.get(current) or {})
    event = Event(KERNEL_CHANGED, name, current, current, image, kernel_type, set_id, tuple(running))
    skip = already_sent(state, event)
    if skip:
        return Assessment([], f"settled on {current} with {where}; {skip}")
    return Assessment([event], f"settled on {current} with {where}, not covered by the last deployment "
                               f"(set {deployed.id}, {deployed.source}): {KERNEL_CHANGED}")


def deployed_sets(pools: Collection[str], deploy_state: Mapping[str, str] | None,
                  watcher_state: Mapping[str, str]) -> dict[str, KernelSet]:
    """The last deployed kernel set per pool.

    cssr-deploy-state (written by the pipeline's report task after a successful run) wins:
    `<pool>.kernel-versions` / `<pool>.kernel-set-id`, else `kernel-versions` / `kernel-set-id`.
    Without it, the watcher's own baseline (`baseline.<pool>`, the set it first saw settled).
    """
    data = deploy_state or {}
    found: dict[str, KernelSet] = {}
    for pool in pools:
        for prefix in (f"{pool}.", ""):
            versions = _json_list(data.get(f"{prefix}kernel-versions"))
            set_id = data.get(f"{prefix}kernel-set-id") or (kernels.kernel_set_id(versions) if versions else "")
            if set_id:
                found[pool] = KernelSet(set_id, frozenset(versions) if versions else None, "cssr-deploy-state")
                break
        else:
            baseline = _json_dict(watcher_state.get(f"baseline.{pool}"))
            if baseline.get("kernelVersions"):
                versions = [str(v) for v in baseline["kernelVersions"]]
                found[pool] = KernelSet(kernels.kernel_set_id(versions), frozenset(versions), "watcher baseline")
    return found


def sent_records(watcher_state: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    return {key: _json_dict(value) for key, value in watcher_state.items() if key.split(".", 1)[0] in EVENT_TYPES}


def prune(data: Mapping[str, str], keep: int = KEEP_RECORDS) -> dict[str, str]:
    """Keep the newest `keep` sent records per pool and event type, and everything else."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, record in sent_records(data).items():
        groups.setdefault((str(record.get("pool")), str(record.get("type"))), []).append(
            (str(record.get("sentAt", "")), key))
    dropped = {key for group in groups.values() for _, key in sorted(group, reverse=True)[keep:]}
    return {k: v for k, v in data.items() if k not in dropped}


def _json_list(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _json_dict(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
