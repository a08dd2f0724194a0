"""What the suite may do to the nodes, in one place (DESIGN.md decision 8: power over nodes is opt-in and narrow).

A MachineConfig or PerformanceProfile is root on every node of its pool: the hugepages config the
suite writes may therefore target no control-plane pool, set only the kernel arguments a DPDK router
needs, and reserve no more hugepages than the target nodes can spare, unless the user says otherwise
explicitly (params allow-control-plane and allow-kernel-args). render and apply-manifests check the
params offline; preflight and apply-manifests check the nodes the params select.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from . import selectors

# The MachineConfigPools of the control plane: `master` (every OpenShift 4), `arbiter` (two-node
# clusters with an arbiter, 4.19+), and `control-plane`, the role name Kubernetes uses, which an
# installer may give a custom pool.
CONTROL_PLANE_POOLS = ("master", "control-plane", "arbiter")
CONTROL_PLANE_LABELS = tuple(f"node-role.kubernetes.io/{role}" for role in CONTROL_PLANE_POOLS)

# Kernel arguments a DPDK router's node needs, by name (the part before '='): the hugepages pool, CPU
# isolation for the poll-mode threads, the IOMMU for VFs bound to vfio-pci, and the power and timer
# settings that keep a polling core from being interrupted. What else a user needs goes through the
# explicit allow-kernel-args param, so that init=, selinux=, enforcing=, module_blacklist= and the like
# can never ride along unnoticed.
KERNEL_ARGS = frozenset({
    # hugepages (set from hugepages-size and hugepages-count, never through kernel-args)
    "hugepages", "hugepagesz", "default_hugepagesz", "transparent_hugepage",
    # IOMMU, for VFs bound to vfio-pci
    "intel_iommu", "amd_iommu", "iommu", "iommu.passthrough", "iommu.strict",
    # CPU isolation of the poll-mode cores
    "isolcpus", "nohz", "nohz_full", "rcu_nocbs", "rcu_nocb_poll", "irqaffinity", "kthread_cpus",
    "systemd.cpu_affinity", "skew_tick", "tsc", "nosoftlockup", "nmi_watchdog",
    # power states: a polling core must not sleep
    "intel_pstate", "intel_idle.max_cstate", "processor.max_cstate", "idle", "pcie_aspm",
})
GENERATED_KERNEL_ARGS = ("hugepages", "hugepagesz", "default_hugepagesz")

# The largest memory of a server one could run a router on: a static bound for the offline check, before
# the nodes' own memory is known.
MAX_NODE_MEMORY = Decimal(16 * 2**40)
# Hugepages are taken out of the node's memory at boot, before anything else runs; the rest must hold the
# OS, the kubelet, the cluster's own pods and the router's non-hugepage memory.
HUGEPAGES_SHARE = Decimal("0.75")


def kernel_arg_name(arg: str) -> str:
    return arg.partition("=")[0]


def unlisted_kernel_args(args: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """The arguments whose name is neither in KERNEL_ARGS nor explicitly allowed."""
    extra = set(allowed)
    return [a for a in args if kernel_arg_name(a) not in KERNEL_ARGS and kernel_arg_name(a) not in extra]


def control_plane_roles(labels: Mapping[str, str] | None) -> list[str]:
    """The control-plane role labels a node carries (node-role.kubernetes.io/master, ...)."""
    return [label for label in CONTROL_PLANE_LABELS if label in (labels or {})]


def hugepages_limit(memory: Decimal) -> Decimal:
    """How much of a node's memory capacity hugepages may take."""
    return memory * HUGEPAGES_SHARE


# -- what the selected nodes allow (preflight and apply-manifests, before any write) ----------------------


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def pool_problem(pool: str, nodes: Sequence[Mapping[str, Any]], pools: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the hugepages config for `pool` would miss target nodes: the pools that hold them instead, by the
    MCO's rule (on a compact or three-node cluster the router's nodes are in `master`, whatever else they are)."""
    elsewhere: dict[str, list[str]] = {}
    for node in nodes:
        held_by = selectors.primary_pool((node.get("metadata") or {}).get("labels"), pools)
        if held_by != pool:
            elsewhere.setdefault(held_by or "no pool", []).append(_name(node))
    if not elsewhere:
        return None
    where = "; ".join(f"{', '.join(sorted(names))} in {'pool ' + held if held != 'no pool' else held}"
                      for held, names in sorted(elsewhere.items()))
    share = "none" if sum(map(len, elsewhere.values())) == len(nodes) else "only some"
    holders = [held for held in sorted(elsewhere) if held != "no pool"]
    fix = f"set pool to {' or '.join(holders)}" if holders else "select nodes of a MachineConfigPool"
    if any(h in CONTROL_PLANE_POOLS for h in holders):
        fix += " (a control-plane pool: with allow-control-plane=true)"
    return (f"MachineConfigPool {pool} holds {share} of the target nodes ({where}): its hugepages config and "
            f"upgrades would not reach them; {fix}, or change node-selector")


def control_plane_problem(nodes: Sequence[Mapping[str, Any]], allowed: bool) -> str | None:
    """Control-plane nodes among the targets, unless allow-control-plane says so."""
    found = sorted(_name(n) for n in nodes if control_plane_roles((n.get("metadata") or {}).get("labels")))
    if not found or allowed:
        return None
    return (f"node-selector selects control-plane nodes ({', '.join(found)}): the SR-IOV policies and the hugepages "
            "config would drain, change and reboot them; select worker nodes, or on a compact cluster set "
            "allow-control-plane=true to mean it")


def hugepages_problem(nodes: Sequence[Mapping[str, Any]], amount: Decimal, what: str,
                      parse: Callable[[str], Decimal]) -> str | None:
    """Nodes whose memory capacity cannot spare `amount` of hugepages (`what` names it for the message)."""
    short = []
    for node in nodes:
        text = str(((node.get("status") or {}).get("capacity") or {}).get("memory", ""))
        try:
            memory = parse(text)
        except ValueError:
            continue  # no capacity reported: the kubelet's problem, not a bound we can check
        if amount > hugepages_limit(memory):
            short.append(f"{_name(node)} has {text}")
    if not short:
        return None
    percent = int(HUGEPAGES_SHARE * 100)
    return (f"{what} is more than {percent}% of the memory of {'; '.join(short)}: the node could not boot its "
            "pods; lower hugepages-count")
