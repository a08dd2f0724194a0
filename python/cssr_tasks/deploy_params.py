"""The deploy params: what the PoC hard-coded, read from the environment and checked before anything
is rendered or written.

Shared by `cssr-tasks render` and `cssr-tasks apply-manifests` through `manifests`; the checks that
span params (and the bounds on what a param may do to the nodes) live here, next to the fields.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self

from . import node_power, selectors
from .errors import ConfigError
from .k8s_names import name_problem
from .kmod_checks import DEFAULT_MODULES, read_modules
from .params import Reader, shown

HUGEPAGES = {"2M": ("hugepages-2Mi", Decimal(2 * 2**20)), "1G": ("hugepages-1Gi", Decimal(2**30))}

# The SR-IOV operator's resourceName (^[a-zA-Z0-9_]+$ in its CRD) becomes the extended resource
# openshift.io/<name>, whose name part is a qualified name of at most 63 characters.
RESOURCE_NAME = r"[a-zA-Z0-9_]{1,63}"
PF_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"  # a Linux interface name has at most 15 characters
# registry host[:port], at least one path component, an optional tag and an optional digest
IMAGE = (r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+"
         r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?")
CPU_SET = r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*"  # ASCII digits: \d would take Arabic-Indic ones
# A kernel parameter's name: [module.]parameter, C identifiers in which - and _ are the same
# (Documentation/admin-guide/kernel-parameters.rst); never a leading '-' ("--" ends the kernel's own
# arguments and hands the rest to init). 128 characters is far past any name the kernel defines.
KERNEL_ARG_NAME = r"[A-Za-z][A-Za-z0-9_.-]{0,127}"
KERNEL_ARG = KERNEL_ARG_NAME + r"(=\S+)?"
QUANTITY = r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?"
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1), "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6),
    "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}
# Bounds of the counts a param sets: more router pods than a site runs, more VFs per PF than any NIC offers
# (PCIe SR-IOV allows 65535; Intel E810 and the ConnectX cards stop at 256 or fewer).
MAX_REPLICAS = 100
MAX_VFS = 256
MODULES_STORAGE = ("pvc", "hostpath")  # the RWX claim, or each node's /mnt/cssr written by a DaemonSet


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity ("4Gi", "500m", "7") as a number; ValueError when it is not one."""
    match = re.fullmatch(QUANTITY, text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a quantity")
    return Decimal(match[1]) * _SUFFIX[match[2] or ""]


def dns_name(name: str) -> str:
    """An interface or resource name as part of an object name: ens6f0np0 -> ens6f0np0, my_vfs -> my-vfs."""
    return re.sub(r"[_.]", "-", name.lower())



def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class Params:
    """What the PoC hard-coded, as params; every value is checked before anything is rendered or written."""

    namespace: str = _help("cssr", "the router's namespace (DNS-1123 label)")
    replicas: int = _help(1, f"router pods (1 to {MAX_REPLICAS})")
    node_selector: str = _help("node-role.kubernetes.io/worker=", "key=value terms: the pods' nodeSelector")
    pool: str = _help("worker", "the MachineConfigPool of the target nodes")
    allow_control_plane: bool = _help(False, "true: the hugepages config may target a control-plane pool")
    router_image: str = _help("quay.io/juniper-128t/128t-5121:5.1.2-1", "the cSSR router image")
    modules: tuple[str, ...] = _help(DEFAULT_MODULES, "DPDK modules the router loads, comma-separated: they "
                                     "follow the router release (igb_uio,rte_kni for 5.1.x)")
    network_mode: str = _help("macvlan", "macvlan (the PoC: macvlan on VF 0) or sriov (VFs in the pod)")
    networks: tuple[dict[str, Any], ...] = _help((), "Multus JSON list for the pod; empty: every rendered network")
    pf_names: tuple[str, ...] = _help(("ens6f0np0", "ens6f1np1"), "SR-IOV PFs: JSON array or comma list")
    num_vfs: int = _help(8, f"VFs per PF (1 to {MAX_VFS})")
    resource_name: str = _help("", "one SR-IOV resource for all PFs; empty: one per PF, named like it")
    device_type: str = _help("netdevice", "VF driver: netdevice or vfio-pci")
    hugepages_size: str = _help("2M", "2M or 1G")
    hugepages_count: int = _help(8192, "hugepages per node (kernel argument hugepages=)")
    hugepages_request: str = _help("4Gi", "hugepages per router pod, a quantity")
    hugepages_method: str = _help("machineconfig", "machineconfig, performanceprofile or none")
    kernel_args: tuple[str, ...] = _help(("intel_iommu=on",), "more kernel arguments: JSON array or spaces")
    allow_kernel_args: tuple[str, ...] = _help((), "names of kernel arguments beyond the allowlist that "
                                                   "kernel-args may set")
    cpu_reserved: str = _help("", "PerformanceProfile reserved CPUs, e.g. 0-1")
    cpu_isolated: str = _help("", "PerformanceProfile isolated CPUs, e.g. 2-31")
    cpu: str = _help("2", "router CPU request and limit")
    memory: str = _help("", "router memory request and limit; empty: none")
    modules_storage_class: str = _help("ocs-storagecluster-cephfs", "RWX class of the modules PVC; empty: default")
    modules_size: str = _help("5Gi", "size of the modules PVC (kernel trees of every kernel run)")
    data_storage_class: str = _help("ocs-storagecluster-cephfs", "class of the cssr-data claims; empty: default")
    data_size: str = _help("512Mi", "size of each pod's cssr-data claim")
    modules_storage: str = _help("pvc", "pvc (the RWX claim `modules`) or hostpath (each node's /mnt/cssr)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        read = Reader(environ)
        params = cls(**cls.read(read))
        for problem in params.problems():
            read.fail(problem)
        read.done()
        return params

    @classmethod
    def read(cls, read: Reader) -> dict[str, Any]:
        """Every field from the environment; subclasses add theirs."""
        return {
            "namespace": read.name("namespace", cls.namespace, hint="choose one such as cssr-lab"),
            "replicas": read.integer("replicas", cls.replicas, minimum=1, maximum=MAX_REPLICAS),
            "node_selector": node_selector(read, cls.node_selector),
            "pool": read.pool(default=cls.pool),
            "allow_control_plane": read.boolean("allow-control-plane", cls.allow_control_plane),
            "router_image": image(read, "router-image", cls.router_image),
            "modules": read_modules(read),
            "network_mode": read.choice("network-mode", cls.network_mode, ("macvlan", "sriov")),
            "networks": _networks(read),
            "pf_names": pf_names(read, cls.pf_names),
            "num_vfs": read.integer("num-vfs", cls.num_vfs, minimum=1, maximum=MAX_VFS),
            "resource_name": optional(read, "resource-name", cls.resource_name, RESOURCE_NAME,
                                      "letters, digits and '_' only (^[a-zA-Z0-9_]+$)"),
            "device_type": read.choice("device-type", cls.device_type, ("netdevice", "vfio-pci")),
            "hugepages_size": read.choice("hugepages-size", cls.hugepages_size, tuple(HUGEPAGES)),
            "hugepages_count": read.integer("hugepages-count", cls.hugepages_count, minimum=1),
            "hugepages_request": quantity(read, "hugepages-request", cls.hugepages_request),
            "hugepages_method": read.choice("hugepages-method", cls.hugepages_method,
                                            ("machineconfig", "performanceprofile", "none")),
            "kernel_args": _list(read, "kernel-args", cls.kernel_args, None),
            "allow_kernel_args": _list(read, "allow-kernel-args", cls.allow_kernel_args, None),
            "cpu_reserved": optional(read, "cpu-reserved", cls.cpu_reserved, CPU_SET, "a cpuset such as 0-1"),
            "cpu_isolated": optional(read, "cpu-isolated", cls.cpu_isolated, CPU_SET, "a cpuset such as 2-31"),
            "cpu": quantity(read, "cpu", cls.cpu),
            "memory": quantity(read, "memory", cls.memory, allow_empty=True),
            "modules_storage_class": optional_name(read, "modules-storage-class", cls.modules_storage_class,
                                                   "a StorageClass name, or empty for the default", subdomain=True),
            "modules_size": quantity(read, "modules-size", cls.modules_size),
            "data_storage_class": optional_name(read, "data-storage-class", cls.data_storage_class,
                                                "a StorageClass name, or empty for the default", subdomain=True),
            "data_size": quantity(read, "data-size", cls.data_size),
            "modules_storage": read.choice("modules-storage", cls.modules_storage, MODULES_STORAGE),
        }

    def problems(self) -> list[str]:
        """What no single param shows: rules that span params, and the shape of the lists."""
        found: list[str] = []
        if self.namespace == "default" or self.namespace.startswith(("openshift", "kube-")):
            found.append(f"param namespace={self.namespace!r} is reserved for the cluster; choose one such as cssr")
        found += self._node_problems()
        found += self._pf_problems()
        if self.network_mode == "macvlan" and self.num_vfs < 2:
            found.append(f"param num-vfs={self.num_vfs} leaves no VF for the policy: network-mode macvlan keeps "
                         "VF 0 for the host; use at least 2")
        found += self._network_problems()
        found += self._kernel_arg_problems()
        found += self._hugepages_problems()
        return found

    def _node_problems(self) -> list[str]:
        """The nodes the params reach: never every node, and the control plane only when allowed explicitly."""
        found = []
        try:
            selector = self.node_selector_map()
        except ConfigError as e:
            return [f"param node-selector: {e}"]
        if not selector:
            found.append("param node-selector is empty, which selects every node (the control plane included) for "
                         "the SR-IOV policies and the router pods; name the router's nodes, e.g. "
                         "node-role.kubernetes.io/worker=")
        if self.allow_control_plane:
            return found
        if self.pool in node_power.CONTROL_PLANE_POOLS:
            found.append(f"param pool={self.pool} is a control-plane pool: the hugepages config would reboot and "
                         "change the control plane; on a compact cluster set allow-control-plane=true to mean it")
        roles = node_power.control_plane_roles(selector)
        if roles:
            found.append(f"param node-selector selects control-plane nodes ({', '.join(roles)}); on a compact "
                         "cluster set allow-control-plane=true to mean it")
        return found

    def _kernel_arg_problems(self) -> list[str]:
        found = []
        for name in self.allow_kernel_args:
            if not re.fullmatch(KERNEL_ARG_NAME, name):
                found.append(f"param allow-kernel-args: {name!r} is not a kernel argument name (no '=')")
        for arg in self.kernel_args:
            if not re.fullmatch(KERNEL_ARG, arg):
                found.append(f"param kernel-args: {arg!r} is not a kernel argument (name or name=value)")
            elif node_power.kernel_arg_name(arg) in node_power.GENERATED_KERNEL_ARGS:
                found.append(f"param kernel-args: {arg!r} is set from hugepages-size and hugepages-count; remove it")
        unlisted = node_power.unlisted_kernel_args(
            [a for a in self.kernel_args if re.fullmatch(KERNEL_ARG, a)], self.allow_kernel_args)
        if unlisted:
            found.append(f"param kernel-args: {', '.join(unlisted)} not in the allowlist of what a DPDK router needs "
                         "(README, Security); to set them anyway, name them in allow-kernel-args")
        return found

    def _pf_problems(self) -> list[str]:
        found = []
        for pf in self.pf_names:
            if not self.resource_name and not re.fullmatch(RESOURCE_NAME, pf):
                found.append(f"param pf-names: {pf!r} cannot name its SR-IOV resource (^[a-zA-Z0-9_]+$); "
                             "set resource-name")
        if self.resource_name and name_problem("cssr-" + dns_name(self.resource_name)):
            found.append(f"param resource-name={self.resource_name!r} cannot name a policy; use letters and digits")
        return found

    def _network_problems(self) -> list[str]:
        found = []
        for i, entry in enumerate(self.networks):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                found.append(f"param networks[{i}] must be an object with a \"name\", e.g. "
                             "{\"name\": \"ens6f0np0-macvlan\"}")
                continue
            if name_problem(entry["name"], subdomain=True):
                found.append(f"param networks[{i}].name={entry['name']!r} is not a NetworkAttachmentDefinition name")
            namespace = entry.get("namespace", self.namespace)
            if not isinstance(namespace, str) or name_problem(namespace):
                found.append(f"param networks[{i}].namespace={namespace!r} is not a namespace name")
        return found

    def _hugepages_problems(self) -> list[str]:
        found: list[str] = []
        resource, page = HUGEPAGES[self.hugepages_size]
        try:
            request = parse_quantity(self.hugepages_request)
        except ValueError:
            return found  # already reported by quantity()
        if request <= 0 or request % page:
            found.append(f"param hugepages-request={self.hugepages_request} must be a positive multiple of the "
                         f"{self.hugepages_size} page size ({resource})")
        elif self.hugepages_method != "none" and request > page * self.hugepages_count:
            found.append(f"param hugepages-request={self.hugepages_request} is more than a node's "
                         f"{self.hugepages_count} pages of {self.hugepages_size}; raise hugepages-count")
        if self.hugepages_method != "none" and page * self.hugepages_count > node_power.MAX_NODE_MEMORY:
            most = int(node_power.MAX_NODE_MEMORY // page)
            found.append(f"param hugepages-count={self.hugepages_count} pages of {self.hugepages_size} is more memory "
                         f"than any node has; use at most {most} (preflight bounds it by the nodes' own memory)")
        if self.hugepages_method == "performanceprofile":
            for name, value in (("cpu-reserved", self.cpu_reserved), ("cpu-isolated", self.cpu_isolated)):
                if not value:
                    found.append(f"param {name} is required with hugepages-method=performanceprofile")
        return found

    # -- derived values -----------------------------------------------------------------------

    def node_selector_map(self) -> dict[str, str]:
        """The selector as a pod nodeSelector, which can only hold key=value terms."""
        result: dict[str, str] = {}
        for term in selectors.parse(self.node_selector):
            if term.operator not in ("=", "=="):
                raise ConfigError(f"term {str(term)!r} cannot be part of a pod nodeSelector; use key=value terms "
                                  "only, e.g. node-role.kubernetes.io/worker=")
            result[term.key] = term.values[0]
        return result

    @property
    def hugepages_resource(self) -> str:
        return HUGEPAGES[self.hugepages_size][0]

    def sriov_resources(self) -> dict[str, tuple[str, ...]]:
        """SR-IOV resource name -> its PFs: one per PF (the PoC), or one for all with resource-name."""
        if self.resource_name:
            return {self.resource_name: self.pf_names}
        return {pf: (pf,) for pf in self.pf_names}

    def sriov_networks(self) -> dict[str, str]:
        """SriovNetwork (and the NetworkAttachmentDefinition the operator makes of it) -> resource name."""
        return {f"{dns_name(res)}-sriovnetwork": res for res in self.sriov_resources()}

    def macvlan_networks(self) -> dict[str, str]:
        """macvlan NetworkAttachmentDefinition -> PF, in network-mode macvlan."""
        if self.network_mode != "macvlan":
            return {}
        return {f"{dns_name(pf)}-macvlan": pf for pf in self.pf_names}

    def pod_networks(self) -> list[dict[str, Any]]:
        """The Multus list of the pod: the networks param, or every network this mode attaches."""
        if self.networks:
            return [dict(n) for n in self.networks]
        if self.network_mode == "macvlan":
            return [{"name": name} for name in self.macvlan_networks()]
        if self.resource_name:  # one shared resource: one attachment (one VF) per PF
            name = next(iter(self.sriov_networks()))
            return [{"name": name} for _ in self.pf_names]
        return [{"name": name} for name in self.sriov_networks()]

    def rendered_networks(self) -> set[str]:
        return set(self.sriov_networks()) | set(self.macvlan_networks())

    def foreign_networks(self) -> list[tuple[str, str]]:
        """(namespace, name) of the pod's networks that we do not render: they must exist already."""
        found = []
        for entry in self.pod_networks():
            namespace = entry.get("namespace", self.namespace)
            if namespace != self.namespace or entry["name"] not in self.rendered_networks():
                found.append((namespace, entry["name"]))
        return found

    def vf_requests(self) -> dict[str, int]:
        """VFs one pod requests per SR-IOV resource: one per attachment of one of our SriovNetworks."""
        networks = self.sriov_networks()
        counts: Counter[str] = Counter()
        for entry in self.pod_networks():
            if entry.get("namespace", self.namespace) == self.namespace and entry["name"] in networks:
                counts[networks[entry["name"]]] += 1
        return dict(counts)

    def warnings(self) -> list[str]:
        """What is allowed but deserves a line in the log: images that can move under the deployment."""
        found = []
        if self.router_image.endswith(":latest"):
            found.append(f"router-image {self.router_image} uses the moving tag latest; pin a version tag or a digest")
        return found


# -- param readers --------------------------------------------------------------------------------


def optional(read: Reader, name: str, default: str, pattern: str, hint: str) -> str:
    """Unset gives the default; set but empty means "none", which a plain Reader.string cannot say."""
    value = read.raw(name)
    if value is None:
        return default
    value = value.strip()
    if value and not re.fullmatch(pattern, value):
        read.fail(f"param {name}={value!r} is not valid; {hint}")
    return value


def optional_name(read: Reader, name: str, default: str, hint: str, *, subdomain: bool = False) -> str:
    """An optional object name (k8s_names' rule): unset gives the default; set but empty means "none"."""
    value = optional(read, name, default, r".*", hint)
    problem = name_problem(value, subdomain=subdomain) if value else ""
    if problem:
        read.fail(f"param {name}={shown(value)} {problem}; {hint}")
        return default
    return value


def node_selector(read: Reader, default: str) -> str:
    """The selector by the Reader's rule (kubectl form, Kubernetes' label rules); given but empty, it is kept
    empty, for Params to refuse: an empty selector selects every node."""
    raw = read.raw("node-selector")
    if raw is not None and not raw.strip():
        return ""
    return read.selector("node-selector", default)


def image(read: Reader, name: str, default: str) -> str:
    """An image reference by the Reader's rule (grammar and length), and fully qualified: the nodes pull it
    from the registry it names, never from a search list."""
    hint = "a fully qualified image reference such as quay.io/org/name:1.2 or registry/ns/name@sha256:..."
    value = read.image(name, default, hint=hint)
    if value and not re.fullmatch(IMAGE, value):
        read.fail(f"param {name}={shown(value)} is not valid; {hint}")
        return default
    return value


def pf_names(read: Reader, default: tuple[str, ...]) -> tuple[str, ...]:
    """SR-IOV physical functions: Linux interface names, each once; empty gives the default."""
    raw = read.raw("pf-names")
    if raw is None or not raw.strip():
        return default
    names = _list(read, "pf-names", default, ",")
    if not names:
        read.fail("param pf-names holds no PF; name at least one, e.g. [\"ens6f0np0\"]")
        return default
    bad = [pf for pf in names if not re.fullmatch(PF_NAME, pf)]
    for pf in bad[:3]:
        read.fail(f"param pf-names: {shown(pf, 40)} is not an interface name (at most 15 letters, digits, "
                  "'.', '_' or '-'; no VF range, which is derived from network-mode)")
    if len(set(names)) != len(names):
        read.fail(f"param pf-names lists a PF twice: {shown(','.join(names))}")
        return default
    return default if bad else names


def quantity(read: Reader, name: str, default: str, *, allow_empty: bool = False) -> str:
    value = optional(read, name, default, r".*", "") if allow_empty else read.string(name, default).strip()
    if value:
        try:
            if parse_quantity(value) <= 0:
                read.fail(f"param {name}={value!r} must be more than zero")
        except ValueError:
            read.fail(f"param {name}={value!r} is not a Kubernetes quantity such as 4Gi, 512Mi or 2")
    return value


def _list(read: Reader, name: str, default: tuple[str, ...], separator: str | None) -> tuple[str, ...]:
    """A JSON array of strings, or a plain list (comma-separated, or space-separated when separator is None)."""
    value = read.raw(name)
    if value is None:
        return default
    text = value.strip()
    if text.startswith("["):
        items = read.json(name, None, kind=list)
        if items is None:
            return default
        if not all(isinstance(i, str) for i in items):
            read.fail(f"param {name} must be a JSON array of strings")
            return default
        return tuple(i.strip() for i in items if i.strip())
    return tuple(i.strip() for i in text.split(separator) if i.strip())


def _networks(read: Reader) -> tuple[dict[str, Any], ...]:
    value = read.json("networks", None, kind=list,
                      hint='a Multus JSON list such as [{"name": "ens6f0np0-macvlan"}]')
    return tuple(value or ())
