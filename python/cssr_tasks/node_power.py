"""What the suite may do to the nodes, in one place (DESIGN.md decision 8: power over nodes is opt-in and narrow).

A MachineConfig or PerformanceProfile is root on every node of its pool: the hugepages config the
suite writes may therefore target no control-plane pool, set only the kernel arguments a DPDK router
needs, and reserve no more hugepages than the target nodes can spare, unless the user says otherwise
explicitly (params allow-control-plane and allow-kernel-args). render and apply-manifests check the
params offline; preflight and apply-manifests check the nodes the params select.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

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
