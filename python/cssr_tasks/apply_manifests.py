"""Deploy the router: render, server-side apply in order, wait for the cluster, roll out, never touch data.

Order: cluster-scoped objects (the hugepages MachineConfig or PerformanceProfile), the namespace,
RBAC, networks (SR-IOV policies, SriovNetworks, macvlan networks), storage; then three readiness
gates, each a bounded and logged wait: the MachineConfigPool settled (with our hugepages rendered),
SR-IOV synced on every target node, and every target node's allocatable hugepages and VFs covering
one pod; then the StatefulSet and its rollout. The pods run router-image only (their init container
waits for the modules build-kmods put on the volume), so no registry is asked anything.

Data safety: a PersistentVolumeClaim is only ever created (POST, which cannot change an existing
claim), never applied over, deleted or resized; an existing StatefulSet keeps its
volumeClaimTemplates (immutable on a real API server), so changed storage params leave the
`cssr-data` claims alone. With nothing changed, no object changes and no revision is made.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import manifests, node_power, waits
from .cluster import Cluster, kind_info
from .errors import ConfigError, Conflict, WaitTimeout
from .log import Log
from .manifests import Manifest
from .params import Reader

NEEDS_CLUSTER = True
MCO_API = "machineconfiguration.openshift.io/v1"
SRIOV_API = "sriovnetwork.openshift.io/v1"
NAD_API = "k8s.cni.cncf.io/v1"
HUGEPAGES_PAGE = {size: page for size, (_, page) in manifests.HUGEPAGES.items()}
# Between two looks at the cluster during a wait: at least a tenth of a second (poll-interval=0 made
# 1,500 LISTs a second), at most ten minutes; smoke-test's interval has the same bounds.
MIN_POLL_INTERVAL, MAX_POLL_INTERVAL = 0.1, 600.0


@dataclass(frozen=True)
class Params(manifests.Params):
    gate_timeout: float = field(default=1800.0, metadata={"help": "seconds each readiness gate may wait"})
    rollout_timeout: float = field(default=900.0, metadata={"help": "seconds the rollout may take"})
    poll_interval: float = field(default=10.0, metadata={"help": "seconds between two looks at the cluster"})

    @classmethod
    def read(cls, read: Reader) -> dict[str, Any]:
        values = super().read(read)
        values.update(gate_timeout=read.seconds("gate-timeout", cls.gate_timeout),
                      rollout_timeout=read.seconds("rollout-timeout", cls.rollout_timeout),
                      poll_interval=read.seconds("poll-interval", cls.poll_interval, minimum=MIN_POLL_INTERVAL,
                                                 maximum=MAX_POLL_INTERVAL))
        return values


@dataclass(frozen=True)
class Result:
    statefulset_revision: str
    pods: list[str]


def run(params: Params, *, cluster: Cluster, log: Log) -> Result:
    rendered = manifests.render(params)
    log.info(f"rendered {len(rendered)} objects for namespace {params.namespace}: network-mode "
             f"{params.network_mode} on {', '.join(params.pf_names)}, {params.hugepages_count} hugepages of "
             f"{params.hugepages_size} ({params.hugepages_method}), {params.replicas} replica(s)")
    for warning in params.warnings():
        log.warn(warning)
    nodes, pool_target = check_cluster(params, cluster, log)

    hugepages_changed = False
    for manifest in rendered:
        if manifest.stage == "workload":
            continue
        changed = apply_one(manifest, cluster, log)
        hugepages_changed |= changed and manifest.stage == "cluster"

    gate_pool(params, cluster, log, pool_target if hugepages_changed else None)
    gate_sriov(params, cluster, log, nodes)
    gate_resources(params, cluster, log, nodes)

    for manifest in rendered:
        if manifest.stage == "workload":
            apply_statefulset(manifest, cluster, log)
    revision = wait_rollout(params, cluster, log)
    pods = pod_names(params, cluster)
    log.info(f"StatefulSet {params.namespace}/{manifests.STATEFULSET} runs revision {revision}: {', '.join(pods)}")
    return Result(statefulset_revision=revision, pods=pods)


# -- before any write -----------------------------------------------------------------------------


def check_cluster(params: Params, cluster: Cluster, log: Log) -> tuple[list[str], str]:
    """Everything the params name that must already exist; one ConfigError naming every miss, no write."""
    problems = []
    targets = cluster.list("v1", "nodes", label_selector=params.node_selector)
    nodes = sorted(n["metadata"]["name"] for n in targets)
    if not nodes:
        problems.append(f"no node matches node-selector {params.node_selector!r}; check it against "
                        "`oc get nodes --show-labels`")
    else:
        log.info(f"target nodes ({len(nodes)}): {', '.join(nodes)}")
    pools = cluster.list(MCO_API, "machineconfigpools")
    pool = next((p for p in pools if p["metadata"]["name"] == params.pool), None)
    if pool is None:
        problems.append(f"MachineConfigPool {params.pool} not found; set pool to one of `oc get mcp`")
    problems += node_problems(params, targets, pools if pool is not None else [])
    if cluster.get_or_none("v1", "namespaces", manifests.SRIOV_NAMESPACE) is None:
        problems.append(f"namespace {manifests.SRIOV_NAMESPACE} not found: is the SR-IOV Network Operator installed?")
    for namespace, name in params.foreign_networks():
        if cluster.get_or_none(NAD_API, "network-attachment-definitions", name, namespace) is None:
            problems.append(f"networks names {namespace}/{name}, which is neither rendered here ("
                            f"{', '.join(sorted(params.rendered_networks()))}) nor an existing "
                            "NetworkAttachmentDefinition")
        else:
            log.info(f"network {namespace}/{name} exists")
    if problems:
        raise ConfigError("could not start the deployment: " + "; ".join(problems) + "; nothing was written")
    target = str(((pool or {}).get("spec") or {}).get("configuration", {}).get("name", ""))
    return nodes, target


def node_problems(params: Params, nodes: list[dict[str, Any]], pools: list[dict[str, Any]]) -> list[str]:
    """What the params would do to the selected nodes that they must not: see node_power."""
    found = [node_power.control_plane_problem(nodes, params.allow_control_plane)]
    if nodes and pools:
        found.append(node_power.pool_problem(params.pool, nodes, pools))
    if params.hugepages_method != "none":
        amount = HUGEPAGES_PAGE[params.hugepages_size] * params.hugepages_count
        found.append(node_power.hugepages_problem(
            nodes, amount, f"hugepages-count={params.hugepages_count} pages of {params.hugepages_size}",
            manifests.parse_quantity))
    return [problem for problem in found if problem]


# -- writes ---------------------------------------------------------------------------------------


def apply_one(manifest: Manifest, cluster: Cluster, log: Log) -> bool:
    """Apply one object (create a claim); log what changed; True when its spec is new or changed."""
    api_version = manifest.obj["apiVersion"]
    plural = kind_info(manifest.kind)[0]
    before = cluster.get_or_none(api_version, plural, manifest.name, manifest.namespace)
    if manifest.kind == "PersistentVolumeClaim":
        return create_claim(manifest, before, cluster, log)
    after = cluster.apply(manifest.obj)
    if before is None:
        log.info(f"created {manifest}")
        return True
    if _meta(after, "resourceVersion") == _meta(before, "resourceVersion"):
        log.debug(f"unchanged {manifest}")
        return False
    log.info(f"updated {manifest}")
    return bool(_meta(after, "generation") != _meta(before, "generation"))


def create_claim(manifest: Manifest, before: dict[str, Any] | None, cluster: Cluster, log: Log) -> bool:
    if before is not None:
        log.info(f"kept {manifest} ({_claim_summary(before)}): a claim is never changed once it exists")
        return False
    try:
        cluster.create(manifest.obj)
    except Conflict:
        log.info(f"kept {manifest}: it was created meanwhile, and a claim is never changed once it exists")
        return False
    log.info(f"created {manifest} ({_claim_summary(manifest.obj)})")
    return True


def apply_statefulset(manifest: Manifest, cluster: Cluster, log: Log) -> None:
    """Apply the StatefulSet; an existing one keeps its claim templates, which no update may change."""
    sts = copy.deepcopy(manifest.obj)
    live = cluster.get_or_none("apps/v1", "statefulsets", manifest.name, manifest.namespace)
    if live is not None:
        kept = [{k: v for k, v in t.items() if k != "status"}
                for t in (live.get("spec") or {}).get("volumeClaimTemplates") or []]
        wanted = sts["spec"]["volumeClaimTemplates"]
        if [_claim_summary(t) for t in kept] != [_claim_summary(t) for t in wanted]:
            log.warn(f"{manifest} keeps its claim templates ({'; '.join(_claim_summary(t) for t in kept)}); the "
                     f"params ask for {'; '.join(_claim_summary(t) for t in wanted)}, but claim templates cannot "
                     "change on an existing StatefulSet and the cssr-data claims are never touched; to give new "
                     "pods other storage, delete the StatefulSet with --cascade=orphan and re-run (the claims stay)")
        sts["spec"]["volumeClaimTemplates"] = kept
    after = cluster.apply(sts)
    if live is None:
        log.info(f"created {manifest}")
    elif _meta(after, "resourceVersion") == _meta(live, "resourceVersion"):
        log.info(f"unchanged {manifest}")
    else:
        log.info(f"updated {manifest}")


def _meta(obj: dict[str, Any], key: str) -> Any:
    return (obj.get("metadata") or {}).get(key)


def _claim_summary(claim: dict[str, Any]) -> str:
    spec = claim.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "?")
    name = (claim.get("metadata") or {}).get("name", "?")
    return f"{name}: {size} of class {spec.get('storageClassName') or '(default)'}, " \
           f"{','.join(spec.get('accessModes') or [])}"


# -- waits ----------------------------------------------------------------------------------------


def wait_for(gate: str, what: str, check: Callable[[], list[str]], *, timeout: float, interval: float,
             log: Log, hint: str, explain: Callable[[], str] | None = None) -> None:
    """Poll `check` (the reasons it is not ready yet; empty when ready) until ready, bounded and logged.

    An API error that outlasts the retry policy of one call (a 503 burst, a restarting API server) is
    progress too, not the end of the step: waits.wait_until checks again until the gate's own deadline.
    """
    last: list[str] = []
    api_failed = False

    def attempt() -> None:
        nonlocal last, api_failed
        api_failed = True
        problems = check()
        api_failed = False
        if problems:
            last = problems
            raise waits.NotYet(f"{gate}: waiting: {'; '.join(problems)}", what=gate, reason="; ".join(problems),
                               hint=hint)

    log.info(f"{gate}: {what} (at most {timeout:g}s)")
    with log.timed(f"{gate}"):
        try:
            waits.wait_until(attempt, clock=waits.Clock(timeout), interval=interval, log=log)
        except WaitTimeout:
            if api_failed:
                raise
            detail = explain() if explain else ""
            raise WaitTimeout(f"could not pass {gate} within {timeout:g}s: {'; '.join(last)}"
                              f"{'; ' + detail if detail else ''}; {hint}") from None
        log.info(f"{gate}: passed")


def gate_pool(params: Params, cluster: Cluster, log: Log, target_before: str | None) -> None:
    """The pool is settled; when our hugepages config changed, settled on a config rendered after it."""

    def check() -> list[str]:
        pool = cluster.get(MCO_API, "machineconfigpools", params.pool)
        spec, status = pool.get("spec") or {}, pool.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        target = (spec.get("configuration") or {}).get("name", "")
        current = (status.get("configuration") or {}).get("name", "")
        machines, updated = int(status.get("machineCount") or 0), int(status.get("updatedMachineCount") or 0)
        if target_before is not None and target == target_before:
            return [f"MachineConfigPool {params.pool} has not rendered the new hugepages config yet "
                    f"(target still {target})"]
        settled = (conditions.get("Updated"), conditions.get("Updating"), conditions.get("Degraded")) == (
            "True", "False", "False") and updated == machines and current == target
        if settled:
            return []
        return [f"MachineConfigPool {params.pool}: Updated={conditions.get('Updated', '?')}, "
                f"Updating={conditions.get('Updating', '?')}, Degraded={conditions.get('Degraded', '?')}, "
                f"{updated}/{machines} machines updated" + (", paused" if spec.get("paused") else "")]

    what = "waiting for the pool to settle" + (" on the new hugepages config" if target_before is not None else "")
    wait_for("gate pool-settled", what, check, timeout=params.gate_timeout, interval=params.poll_interval, log=log,
             hint=f"nodes reboot one by one for a new config: see `oc get mcp {params.pool}`, or raise gate-timeout")


def gate_sriov(params: Params, cluster: Cluster, log: Log, nodes: list[str]) -> None:
    """Every target node's SriovNetworkNodeState has synced, with our PFs' VFs, and our networks exist."""
    attached = {e["name"] for e in params.pod_networks() if e.get("namespace", params.namespace) == params.namespace}

    def check() -> list[str]:
        states = {s["metadata"]["name"]: s for s in cluster.list(SRIOV_API, "sriovnetworknodestates",
                                                                 namespace=manifests.SRIOV_NAMESPACE)}
        problems = []
        for node in nodes:
            state = states.get(node)
            if state is None:
                problems.append(f"node {node}: no SriovNetworkNodeState (no SR-IOV config daemon there yet)")
                continue
            status = state.get("status") or {}
            sync = status.get("syncStatus") or "unknown"
            if sync != "Succeeded":
                error = f" ({status['lastSyncError']})" if status.get("lastSyncError") else ""
                problems.append(f"node {node}: syncStatus {sync}{error}")
                continue
            interfaces = {i.get("name"): i for i in status.get("interfaces") or []}
            for pf in params.pf_names:
                if pf not in interfaces:
                    problems.append(f"node {node}: PF {pf} not found (SR-IOV PFs there: "
                                    f"{', '.join(sorted(str(n) for n in interfaces)) or 'none'})")
                elif int(interfaces[pf].get("numVfs") or 0) < params.num_vfs:
                    problems.append(f"node {node}: PF {pf} has {int(interfaces[pf].get('numVfs') or 0)} VFs, "
                                    f"want {params.num_vfs}")
        for name in sorted(attached & set(params.sriov_networks())):
            if cluster.get_or_none(NAD_API, "network-attachment-definitions", name, params.namespace) is None:
                problems.append(f"NetworkAttachmentDefinition {params.namespace}/{name} not yet made from "
                                f"SriovNetwork {name}")
        return problems

    wait_for("gate sriov-synced", f"waiting for SR-IOV on {len(nodes)} node(s)", check,
             timeout=params.gate_timeout, interval=params.poll_interval, log=log,
             hint=f"see `oc get sriovnetworknodestates -n {manifests.SRIOV_NAMESPACE} -o yaml` and the policies' "
                  "pfNames")


def gate_resources(params: Params, cluster: Cluster, log: Log, nodes: list[str]) -> None:
    """Every target node can hold one router pod: hugepages and VFs allocatable."""
    hugepages = params.hugepages_resource
    request = manifests.parse_quantity(params.hugepages_request)
    # macvlan mode asks no VF of the pod, but VF 0 (the macvlan master) exists only once the policy is applied
    vfs = {f"openshift.io/{res}": max(params.vf_requests().get(res, 0), 1) for res in params.sriov_resources()}

    def check() -> list[str]:
        problems = []
        found = {n["metadata"]["name"]: n for n in cluster.list("v1", "nodes", label_selector=params.node_selector)}
        for node in nodes:
            allocatable = ((found.get(node) or {}).get("status") or {}).get("allocatable") or {}
            have = str(allocatable.get(hugepages, "0"))
            if _quantity(have) < request:
                problems.append(f"node {node}: allocatable {hugepages} is {have}, the pod requests "
                                f"{params.hugepages_request}")
            for resource, need in vfs.items():
                count = str(allocatable.get(resource, "0"))
                if _quantity(count) < need:
                    problems.append(f"node {node}: allocatable {resource} is {count}, the pod needs {need}")
        return problems

    wait_for("gate node-resources", f"waiting for {params.hugepages_request} of {hugepages} and "
             f"{', '.join(f'{n} {r}' for r, n in vfs.items())} on every target node", check,
             timeout=params.gate_timeout, interval=params.poll_interval, log=log,
             hint="hugepages come from the hugepages config after a reboot, VFs from the SR-IOV policies; "
                  "see `oc describe node`")


def _quantity(text: str) -> Any:
    try:
        return manifests.parse_quantity(text)
    except ValueError:
        return 0


def wait_rollout(params: Params, cluster: Cluster, log: Log) -> str:
    """All replicas updated and ready on one revision; returns that revision."""
    name, namespace = manifests.STATEFULSET, params.namespace
    revision = ""

    def check() -> list[str]:
        nonlocal revision
        sts = cluster.get("apps/v1", "statefulsets", name, namespace)
        status = sts.get("status") or {}
        generation = int(_meta(sts, "generation") or 0)
        if int(status.get("observedGeneration") or 0) < generation:
            return [f"the StatefulSet controller has not seen generation {generation} yet"]
        replicas = int((sts.get("spec") or {}).get("replicas", 1))
        updated, ready = int(status.get("updatedReplicas") or 0), int(status.get("readyReplicas") or 0)
        problems = []
        if updated != replicas or ready != replicas:
            problems.append(f"{updated}/{replicas} pods updated, {ready}/{replicas} ready")
        if status.get("currentRevision") != status.get("updateRevision"):
            problems.append(f"revision {status.get('currentRevision')} -> {status.get('updateRevision')}")
        revision = str(status.get("updateRevision") or "")
        return problems

    wait_for("rollout", f"waiting for StatefulSet {namespace}/{name} to roll out", check,
             timeout=params.rollout_timeout, interval=params.poll_interval, log=log,
             explain=lambda: _pods_summary(params, cluster),
             hint=f"see `oc describe pod -n {namespace} -l app=cssr` and the init containers' logs")
    return revision


def _pods_summary(params: Params, cluster: Cluster) -> str:
    parts = []
    for pod in cluster.list("v1", "pods", namespace=params.namespace, label_selector="app=cssr"):
        status = pod.get("status") or {}
        waiting = [f"{c.get('name')}: {c['state']['waiting'].get('reason', 'waiting')}"
                   for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
                   if (c.get("state") or {}).get("waiting")]
        parts.append(f"pod {pod['metadata']['name']} {status.get('phase', 'Unknown')}"
                     + (f" ({', '.join(waiting)})" if waiting else ""))
    return ", ".join(parts) or "no pod yet"


def pod_names(params: Params, cluster: Cluster) -> list[str]:
    prefix = manifests.STATEFULSET + "-"
    ordinals = []
    for pod in cluster.list("v1", "pods", namespace=params.namespace, label_selector="app=cssr"):
        suffix = pod["metadata"]["name"][len(prefix):]
        if pod["metadata"]["name"].startswith(prefix) and re.fullmatch(r"\d+", suffix):
            ordinals.append(int(suffix))
    return [f"{prefix}{i}" for i in sorted(ordinals) if i < params.replicas]
