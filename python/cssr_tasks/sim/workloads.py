"""What a real cluster does after apply-manifests writes: the operators and controllers, simulated.

    workloads = install(sim)             # SR-IOV node states, operator namespaces, the controllers below
    workloads.pods_become_ready = False  # a rollout that never finishes

- MachineConfig Operator: a MachineConfig (or a PerformanceProfile, through the Node Tuning Operator)
  renders a new config for its pool, which updates one machine per step, then sets the nodes'
  allocatable hugepages from the kernel arguments.
- SR-IOV Network Operator: a policy puts the SriovNetworkNodeStates of its nodes InProgress, then
  Succeeded with the VFs created and the nodes' allocatable `openshift.io/<resourceName>` set; a
  SriovNetwork gets its NetworkAttachmentDefinition in networkNamespace.
- StatefulSet controller: a ControllerRevision per distinct pod template (none for a no-op), the claims
  of volumeClaimTemplates, pods that become Ready one per step, and the status fields of a rollout.
- DaemonSet controller (sim/daemonsets.py): a pod per matching node, whose init containers may really
  run (sim/pods.py), and the status fields of a rollout.
  `pod_hooks` finish each pod before it is stored, as the kubelet and Multus would (sim.router.multus).
- PersistentVolumeClaims bind as soon as they are created.
- Admission rejects what a real API server rejects: changes to a StatefulSet's immutable spec fields,
  and to a PVC's spec other than growing its storage request.

Progress is driven by time (`step` seconds per move) on the emulator's event loop, so that a client
polling the API sees the states a real rollout goes through. Nothing here runs against a real cluster.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import traceback
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .. import selectors
from ..cluster import KINDS
from . import SimulatedCluster, key_of
from .daemonsets import DaemonSets
from .server import Emulator, Recorded, Store

SRIOV_API = "sriovnetwork.openshift.io/v1"
SRIOV_NAMESPACE = "openshift-sriov-network-operator"
MCO_API = "machineconfiguration.openshift.io/v1"
NAD_API = "k8s.cni.cncf.io/v1"
# The spec fields a real API server lets an update change (validation.ValidateStatefulSetUpdate).
STATEFULSET_MUTABLE = {"replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
                       "revisionHistoryLimit", "persistentVolumeClaimRetentionPolicy"}
DEFAULT_NICS = {"ens6f0np0": "0000:3b:00.0", "ens6f1np1": "0000:3b:00.1"}


def node_state(node: str, nics: dict[str, str], *, num_vfs: int = 8, sync: str = "Succeeded") -> dict[str, Any]:
    """A SriovNetworkNodeState as the config daemon reports it: one entry per SR-IOV capable PF."""
    return {
        "apiVersion": SRIOV_API, "kind": "SriovNetworkNodeState",
        "metadata": {"name": node, "namespace": SRIOV_NAMESPACE},
        "spec": {},
        "status": {"syncStatus": sync, "interfaces": [
            {"name": pf, "pciAddress": pci, "vendor": "15b3", "deviceID": "1017", "driver": "mlx5_core",
             "linkType": "ETH", "mtu": 1500, "numVfs": num_vfs, "totalvfs": 16} for pf, pci in nics.items()]},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}


def install(sim: SimulatedCluster, *, step: float = 0.02, nics: dict[str, str] | None = None,
            node_selector: str = "node-role.kubernetes.io/worker=") -> Workloads:
    """The cluster side of a cSSR deployment: operators installed, PFs reported, controllers running."""
    sim.put(namespace(SRIOV_NAMESPACE))
    sim.put(namespace("cssr"))  # where the pipeline and the router run, and the images live
    for node in sim.objects("v1", "Node"):
        if selectors.matches(node_selector, node["metadata"].get("labels")):
            sim.put(node_state(node["metadata"]["name"], DEFAULT_NICS if nics is None else nics))
    workloads = Workloads(sim.emulator, step)
    sim.emulator.controllers.append(workloads.on_write)
    sim.emulator.admission.append(immutable_fields)
    return workloads


def immutable_fields(record: Recorded, old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    if old is None or record.subresource:
        return None
    name = old["metadata"]["name"]
    if record.resource == "statefulsets":
        def fixed(obj: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in (obj.get("spec") or {}).items() if k not in STATEFULSET_MUTABLE}
        if fixed(old) != fixed(new):
            return (f'StatefulSet.apps "{name}" is invalid: spec: Forbidden: updates to statefulset spec for fields '
                    "other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
    if record.resource == "persistentvolumeclaims":
        def storage(obj: dict[str, Any]) -> str:
            return str(((obj.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))

        def rest(obj: dict[str, Any]) -> dict[str, Any]:
            spec = copy.deepcopy(obj.get("spec") or {})
            spec.get("resources", {}).pop("requests", None)
            return spec
        if rest(old) != rest(new):
            return (f'PersistentVolumeClaim "{name}" is invalid: spec: Forbidden: spec is immutable after creation '
                    "except resources.requests and volumeAttributesClassName for bound claims")
        if _mi(storage(new)) < _mi(storage(old)):
            return (f'PersistentVolumeClaim "{name}" is invalid: spec.resources.requests.storage: Forbidden: '
                    "field can not be less than previous value")
    return None


_MI: dict[str, Decimal] = {"": Decimal(1) / 2**20, "Ki": Decimal(1) / 1024, "Mi": Decimal(1), "Gi": Decimal(1024),
                           "Ti": Decimal(1024**2)}


def _mi(quantity: str) -> Decimal:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", quantity)
    return Decimal(match[1]) * _MI[match[2] or ""] if match else Decimal(0)


def _condition(kind: str, value: bool) -> dict[str, str]:
    return {"type": kind, "status": "True" if value else "False", "reason": "", "message": "",
            "lastTransitionTime": "2026-11-01T00:00:00Z"}


def _hash(value: Any, length: int) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


class Workloads:
    """The simulated controllers; knobs are plain attributes that tests flip."""

    def __init__(self, emulator: Emulator, step: float) -> None:
        self.emulator = emulator
        self.step = step
        self.pools_render = True  # False: the MachineConfig Operator ignores new configs
        self.pools_update = True  # False: a pool stays Updating forever
        self.sriov_syncs = True  # False: node states stay InProgress
        self.pods_become_ready = True  # False: the first pod of a rollout never gets Ready
        # fn(pod, statefulset) on each pod the StatefulSet controller makes, before it is stored
        self.pod_hooks: list[Callable[[dict[str, Any], dict[str, Any]], None]] = []
        self.errors: list[str] = []  # exceptions in the controllers (tests assert it stays empty)
        # the DaemonSet controller (sim/daemonsets.py); its `runner` runs the pods' init containers
        self.daemonsets = DaemonSets(self)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        return self.emulator.store

    def _get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.store.get(key_of({"apiVersion": api_version, "kind": kind,
                                      "metadata": {"name": name, "namespace": namespace}}))

    def _put(self, obj: dict[str, Any]) -> None:
        self.store.put(key_of(obj), obj)

    def _items(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        group, _, version = api_version.rpartition("/")
        return self.store.items((group, version, KINDS[kind][0]), namespace)

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        assert self.emulator.loop is not None, "controllers run only while the simulated cluster serves"
        self.emulator.loop.call_later(self.step, self._guarded, fn, args)

    def _guarded(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            with self.store.lock:
                fn(*args)
        except Exception:
            self.errors.append(traceback.format_exc())

    def _nodes(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        return [n for n in self._items("v1", "Node")
                if all((n["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]

    # -- dispatch ---------------------------------------------------------------------------

    def on_write(self, emulator: Emulator, record: Recorded, obj: dict[str, Any] | None) -> None:
        if obj is None or record.subresource:
            return
        try:
            handler = {
                "machineconfigs": self._machine_config,
                "performanceprofiles": self._performance_profile,
                "sriovnetworknodepolicies": self._sriov_policy,
                "sriovnetworks": self._sriov_network,
                "persistentvolumeclaims": self._bind,
                "statefulsets": self._statefulset,
                "daemonsets": self.daemonsets.on_write,
                "nodes": self.daemonsets.on_node,
            }.get(record.resource or "")
            if handler is not None:
                handler(obj)
        except Exception:
            self.errors.append(traceback.format_exc())

    # -- MachineConfig Operator -------------------------------------------------------------

    def _machine_config(self, mc: dict[str, Any]) -> None:
        pool = (mc["metadata"].get("labels") or {}).get("machineconfiguration.openshift.io/role")
        args = {a.split("=", 1)[0]: a.split("=", 1)[-1] for a in mc["spec"].get("kernelArguments") or []}
        hugepages = (args["hugepagesz"], int(args["hugepages"])) if "hugepagesz" in args and "hugepages" in args \
            else None
        if pool:
            self._render(pool, mc["metadata"]["name"], mc["spec"], hugepages)

    def _performance_profile(self, profile: dict[str, Any]) -> None:
        selector = profile["spec"].get("machineConfigPoolSelector") or {}
        pools = [k.rsplit("/", 1)[-1] for k in selector if k.startswith("pools.operator.machineconfiguration")]
        pages = (profile["spec"].get("hugepages") or {}).get("pages") or []
        hugepages = (pages[0]["size"], int(pages[0]["count"])) if pages else None
        for pool in pools:
            self._render(pool, f"50-performance-{profile['metadata']['name']}", profile["spec"], hugepages)

    def _render(self, pool_name: str, source: str, content: Any, hugepages: tuple[str, int] | None) -> None:
        pool = self._get(MCO_API, "MachineConfigPool", pool_name)
        if pool is None or not self.pools_render:
            return
        rendered = f"rendered-{pool_name}-{_hash([pool['spec']['configuration']['name'], source, content], 32)}"
        sources = [s for s in pool["spec"]["configuration"].get("source") or [] if s.get("name") != source]
        pool["spec"]["configuration"] = {"name": rendered, "source": [*sources, {
            "apiVersion": MCO_API, "kind": "MachineConfig", "name": source}]}
        status = pool["status"]
        status.update(updatedMachineCount=0, readyMachineCount=0, unavailableMachineCount=1,
                      conditions=[_condition("Updated", False), _condition("Updating", True),
                                  _condition("Degraded", False), _condition("NodeDegraded", False),
                                  _condition("RenderDegraded", False)])
        self._put(pool)
        self._later(self._pool_step, pool_name, rendered, hugepages)

    def _pool_step(self, pool_name: str, rendered: str, hugepages: tuple[str, int] | None) -> None:
        pool = self._get(MCO_API, "MachineConfigPool", pool_name)
        if pool is None or pool["spec"]["configuration"]["name"] != rendered or not self.pools_update:
            return  # superseded by a newer render, or held
        status = pool["status"]
        status["updatedMachineCount"] = min(status["machineCount"], status["updatedMachineCount"] + 1)
        status["readyMachineCount"] = status["updatedMachineCount"]
        if status["updatedMachineCount"] < status["machineCount"]:
            self._put(pool)
            self._later(self._pool_step, pool_name, rendered, hugepages)
            return
        status.update(configuration=copy.deepcopy(pool["spec"]["configuration"]), unavailableMachineCount=0,
                      conditions=[_condition("Updated", True), _condition("Updating", False),
                                  _condition("Degraded", False), _condition("NodeDegraded", False),
                                  _condition("RenderDegraded", False)])
        self._put(pool)
        for node in self._nodes(pool["spec"]["nodeSelector"].get("matchLabels") or {}):
            annotations = node["metadata"].setdefault("annotations", {})
            annotations["machineconfiguration.openshift.io/currentConfig"] = rendered
            annotations["machineconfiguration.openshift.io/desiredConfig"] = rendered
            if hugepages is not None:
                size, count = hugepages
                resource = "hugepages-2Mi" if size == "2M" else "hugepages-1Gi"
                amount = f"{count * 2}Mi" if size == "2M" else f"{count}Gi"
                for field in ("allocatable", "capacity"):
                    node["status"][field][resource] = amount
            self._put(node)

    # -- SR-IOV Network Operator ------------------------------------------------------------

    def _sriov_policy(self, policy: dict[str, Any]) -> None:
        for node in self._nodes(policy["spec"].get("nodeSelector") or {}):
            state = self._get(SRIOV_API, "SriovNetworkNodeState", node["metadata"]["name"], SRIOV_NAMESPACE)
            if state is not None:
                state["status"]["syncStatus"] = "InProgress"
                self._put(state)
        self._later(self._sriov_sync, policy["metadata"]["name"])

    def _sriov_sync(self, policy_name: str) -> None:
        policy = self._get(SRIOV_API, "SriovNetworkNodePolicy", policy_name, SRIOV_NAMESPACE)
        if policy is None or not self.sriov_syncs:
            return
        spec = policy["spec"]
        for node in self._nodes(spec.get("nodeSelector") or {}):
            state = self._get(SRIOV_API, "SriovNetworkNodeState", node["metadata"]["name"], SRIOV_NAMESPACE)
            if state is None:
                continue
            vfs = 0
            for selector in spec["nicSelector"].get("pfNames") or []:
                pf, _, vf_range = selector.partition("#")
                for iface in state["status"]["interfaces"]:
                    if iface["name"] == pf:
                        iface["numVfs"] = spec["numVfs"]
                        first, last = (int(x) for x in vf_range.split("-")) if vf_range else (0, spec["numVfs"] - 1)
                        vfs += last - first + 1
            state["status"]["syncStatus"] = "Succeeded"
            self._put(state)
            for field in ("allocatable", "capacity"):
                node["status"][field][f"openshift.io/{spec['resourceName']}"] = str(vfs)
            self._put(node)

    def _sriov_network(self, network: dict[str, Any]) -> None:
        spec = network["spec"]
        name = network["metadata"]["name"]
        config = {"cniVersion": "1.0.0", "name": name, "type": "sriov", "spoofchk": spec.get("spoofChk"),
                  "trust": spec.get("trust"), "ipam": {}}
        self._put({"apiVersion": NAD_API, "kind": "NetworkAttachmentDefinition",
                   "metadata": {"name": name, "namespace": spec.get("networkNamespace") or SRIOV_NAMESPACE,
                                "annotations": {"k8s.v1.cni.cncf.io/resourceName":
                                                f"openshift.io/{spec['resourceName']}"}},
                   "spec": {"config": json.dumps(config)}})

    # -- storage ----------------------------------------------------------------------------

    def _bind(self, claim: dict[str, Any]) -> None:
        if (claim.get("status") or {}).get("phase") == "Bound":
            return
        spec = claim.get("spec") or {}
        claim["status"] = {"phase": "Bound", "accessModes": spec.get("accessModes") or [],
                           "capacity": {"storage": spec["resources"]["requests"]["storage"]}}
        self._put(claim)

    # -- StatefulSet controller -------------------------------------------------------------

    def _statefulset(self, sts: dict[str, Any]) -> None:
        meta, spec = sts["metadata"], sts["spec"]
        revision = f"{meta['name']}-{_hash(spec['template'], 10)}"
        status = sts.setdefault("status", {})
        if status.get("updateRevision") != revision:
            owned = [r for r in self._items("apps/v1", "ControllerRevision", meta["namespace"])
                     if r["metadata"]["name"].startswith(meta["name"] + "-")]
            self._put({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                       "metadata": {"name": revision, "namespace": meta["namespace"],
                                    "labels": {**spec["selector"]["matchLabels"],
                                               "controller.kubernetes.io/hash": revision.rsplit("-", 1)[1]},
                                    "ownerReferences": [self._owner(sts)]},
                       "data": {"spec": {"template": copy.deepcopy(spec["template"])}},
                       "revision": len(owned) + 1})
            status["updateRevision"] = revision
            status.setdefault("currentRevision", revision)
        status["observedGeneration"] = meta.get("generation", 1)
        status.setdefault("collisionCount", 0)
        self._count(sts)
        self._put(sts)
        for template in spec.get("volumeClaimTemplates") or []:
            for ordinal in range(int(spec.get("replicas", 1))):
                name = f"{template['metadata']['name']}-{meta['name']}-{ordinal}"
                if self._get("v1", "PersistentVolumeClaim", name, meta["namespace"]) is None:
                    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "metadata": {"name": name, "namespace": meta["namespace"],
                                          "labels": dict(spec["selector"]["matchLabels"])},
                             "spec": copy.deepcopy(template["spec"])}
                    self._put(claim)
                    self._bind(claim)
        self._later(self._rollout_step, meta["namespace"], meta["name"])

    @staticmethod
    def _owner(obj: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                "uid": obj["metadata"].get("uid", ""), "controller": True, "blockOwnerDeletion": True}

    def _pods(self, sts: dict[str, Any]) -> dict[int, dict[str, Any]]:
        prefix = sts["metadata"]["name"] + "-"
        found = {}
        for pod in self._items("v1", "Pod", sts["metadata"]["namespace"]):
            suffix = pod["metadata"]["name"][len(prefix):]
            if pod["metadata"]["name"].startswith(prefix) and suffix.isdigit():
                found[int(suffix)] = pod
        return found

    @staticmethod
    def _ready(pod: dict[str, Any]) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or [])

    def _count(self, sts: dict[str, Any]) -> None:
        replicas = int(sts["spec"].get("replicas", 1))
        status = sts["status"]
        pods = {i: p for i, p in self._pods(sts).items() if i < replicas}
        update = status["updateRevision"]
        updated = [p for p in pods.values() if p["metadata"]["labels"].get("controller-revision-hash") == update]
        ready = [p for p in pods.values() if self._ready(p)]
        status.update(replicas=len(pods), readyReplicas=len(ready), availableReplicas=len(ready),
                      updatedReplicas=len(updated),
                      currentReplicas=len([p for p in pods.values() if p["metadata"]["labels"].get(
                          "controller-revision-hash") == status["currentRevision"]]))
        if len(updated) == replicas and len(ready) == replicas:
            status.update(currentRevision=update, currentReplicas=replicas)

    def _rollout_step(self, namespace: str, name: str) -> None:
        sts = self._get("apps/v1", "StatefulSet", name, namespace)
        if sts is None:
            return
        replicas = int(sts["spec"].get("replicas", 1))
        pods = self._pods(sts)
        for ordinal in [i for i in pods if i >= replicas]:
            self.store.delete(self._pod_key(namespace, pods.pop(ordinal)))
        update = sts["status"]["updateRevision"]
        pending = [i for i in range(replicas) if i not in pods or not self._ready(pods[i])
                   or pods[i]["metadata"]["labels"].get("controller-revision-hash") != update]
        if pending:
            ordinal = pending[0]
            current = pods.get(ordinal)
            stuck = current is not None and not self._ready(current) and \
                current["metadata"]["labels"].get("controller-revision-hash") == update
            if not stuck:
                pod = self._pod(sts, ordinal, ready=self.pods_become_ready)
                for hook in self.pod_hooks:
                    hook(pod, sts)
                self._put(pod)
        self._count(sts)
        self._put(sts)
        if pending and self.pods_become_ready:
            self._later(self._rollout_step, namespace, name)

    @staticmethod
    def _pod_key(namespace: str, pod: dict[str, Any]) -> Any:
        return (("", "v1", "pods"), namespace, pod["metadata"]["name"])

    def _pod(self, sts: dict[str, Any], ordinal: int, *, ready: bool) -> dict[str, Any]:
        template = sts["spec"]["template"]
        name = f"{sts['metadata']['name']}-{ordinal}"
        nodes = sorted(n["metadata"]["name"] for n in self._nodes(template["spec"].get("nodeSelector") or {}))
        containers = [c["name"] for c in template["spec"]["containers"]]
        if ready:
            state: dict[str, Any] = {"running": {"startedAt": "2026-11-01T00:00:00Z"}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": sts["metadata"]["namespace"],
                         "labels": {**template["metadata"].get("labels", {}),
                                    "controller-revision-hash": sts["status"]["updateRevision"],
                                    "statefulset.kubernetes.io/pod-name": name,
                                    "apps.kubernetes.io/pod-index": str(ordinal)},
                         "annotations": dict(template["metadata"].get("annotations") or {}),
                         "ownerReferences": [self._owner(sts)]},
            "spec": {**copy.deepcopy(template["spec"]), "hostname": name,
                     "nodeName": nodes[ordinal % len(nodes)] if nodes else ""},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": c, "ready": ready, "state": state} for c in containers]},
        }
