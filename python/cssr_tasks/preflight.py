"""Check that the cluster can take a cSSR before anything is built or applied.

Every check runs and prints one PASS, FAIL or SKIP line; the step fails at the end, listing
each failure with its fix, so that one run shows everything to repair. Checked:

- the operators' CRDs: SR-IOV, Multus, the Machine Config Operator, and the Node Tuning
  Operator when hugepages-method=performanceprofile;
- the target nodes exist and are Ready, and are no control-plane nodes unless allow-control-plane=true;
- the named MachineConfigPool holds every target node (on a compact cluster they are in `master`, and the
  check names that pool); the pools are settled, or updating with allow-updating=true; never degraded;
- the hugepages the pipeline would reserve fit in each target node's memory;
- hugepages and SR-IOV resources are allocatable for `replicas` pods. When the pipeline
  configures them itself (hugepages-method, the SR-IOV policy of network-mode sriov), missing
  ones are a note, not a failure: apply-manifests creates them and waits for the pool;
- the SR-IOV PFs exist on every target node, and the config daemon is not failing there;
- the image registry answers (any HTTP answer, 401 included, means reachable).

The step only reads: CRDs, nodes, MachineConfigPools, SriovNetworkNodeStates, and /v2/ of the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import deploy_params, node_power, selectors
from .cluster import Cluster
from .errors import ApiError, ConfigError, CssrError, Forbidden, NotFound
from .log import Log
from .params import Reader

NEEDS_CLUSTER = True
CRD_API = "apiextensions.k8s.io/v1"
MCO_API = "machineconfiguration.openshift.io/v1"
SRIOV_API = "sriovnetwork.openshift.io/v1"
SRIOV_NAMESPACE = "openshift-sriov-network-operator"
HUGEPAGES = {"2M": "hugepages-2Mi", "1G": "hugepages-1Gi"}

SRIOV_FIX = ("install the SR-IOV Network Operator from OperatorHub into namespace openshift-sriov-network-operator "
             "(oc get csv -n openshift-sriov-network-operator)")
CRDS: dict[str, str] = {
    "sriovnetworknodepolicies.sriovnetwork.openshift.io": SRIOV_FIX,
    "sriovnetworks.sriovnetwork.openshift.io": SRIOV_FIX,
    "sriovnetworknodestates.sriovnetwork.openshift.io": SRIOV_FIX,
    "network-attachment-definitions.k8s.cni.cncf.io": "Multus comes with OpenShift networking; check the "
                                                      "network cluster operator (oc get co network)",
    "machineconfigpools.machineconfiguration.openshift.io": "this does not look like OpenShift (no Machine "
                                                            "Config Operator); cssr-deploy needs OpenShift 4",
}
MACHINECONFIG_CRD = ("machineconfigs.machineconfiguration.openshift.io",
                     "this does not look like OpenShift (no Machine Config Operator); or set hugepages-method=none")
PERFORMANCE_CRD = ("performanceprofiles.performance.openshift.io",
                   "hugepages-method=performanceprofile needs the Node Tuning Operator (OpenShift 4.11+, "
                   "oc get co node-tuning); or set hugepages-method=machineconfig")

# A Kubernetes quantity ("16Gi", "7", "500m") as a number; ValueError when it is not one.
quantity = deploy_params.parse_quantity


@dataclass(frozen=True)
class Params:
    node_selector: str = field(default="node-role.kubernetes.io/worker=",
                               metadata={"help": "label selector of the target nodes; empty: the pool's nodes"})
    pool: str = field(default="", metadata={"help": "MachineConfigPool that must hold the target nodes"})
    allow_control_plane: bool = field(default=False, metadata={"help": "true: control-plane nodes may be targets"})
    allow_updating: bool = field(default=False, metadata={"help": "true: an updating pool passes"})
    hugepages_method: str = field(default="machineconfig",
                                  metadata={"help": "machineconfig, performanceprofile or none"})
    hugepages_size: str = field(default="2M", metadata={"help": "2M or 1G"})
    hugepages_request: str = field(default="4Gi", metadata={"help": "hugepages per router pod, a quantity"})
    hugepages_count: int = field(default=8192, metadata={"help": "hugepages per node the pipeline reserves"})
    replicas: int = field(default=1, metadata={"help": "router pods"})
    network_mode: str = field(default="macvlan", metadata={"help": "macvlan or sriov"})
    pf_names: tuple[str, ...] = field(default=("ens6f0np0", "ens6f1np1"),
                                      metadata={"help": "SR-IOV PFs: JSON array or comma list"})
    resource_name: str = field(default="", metadata={"help": "one SR-IOV resource for all PFs; empty: one per PF"})
    image_repository: str = field(
        default="image-registry.openshift-image-registry.svc:5000/cssr/cssr-init",
        metadata={"help": "registry/namespace/name the images go to; empty skips the registry check"})
    tls_verify: bool | str = field(default=True, metadata={"help": "true, false, or a CA bundle path"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        image_repository = read.raw("image-repository")
        params = cls(
            # empty means "the pool's nodes", so an empty value is not replaced by the default
            node_selector=deploy_params.node_selector(read, cls.node_selector),
            pool=read.pool(),
            allow_control_plane=read.boolean("allow-control-plane", False),
            allow_updating=read.boolean("allow-updating", False),
            hugepages_method=read.choice("hugepages-method", cls.hugepages_method,
                                         ("machineconfig", "performanceprofile", "none")),
            hugepages_size=read.choice("hugepages-size", cls.hugepages_size, tuple(HUGEPAGES)),
            hugepages_request=deploy_params.quantity(read, "hugepages-request", cls.hugepages_request),
            hugepages_count=read.integer("hugepages-count", cls.hugepages_count, minimum=1),
            replicas=read.integer("replicas", cls.replicas, minimum=1),
            network_mode=read.choice("network-mode", cls.network_mode, ("macvlan", "sriov")),
            pf_names=deploy_params.pf_names(read, cls.pf_names),
            resource_name=read.string("resource-name", "", pattern=deploy_params.RESOURCE_NAME,
                                      hint="at most 63 letters, digits and '_'"),
            # empty means "skip the check", so an empty value is not replaced by the default
            image_repository="" if image_repository is not None and not image_repository.strip()
            else read.image("image-repository", cls.image_repository),
            tls_verify=read.tls_verify(),
        )
        if not params.node_selector and not params.pool:
            read.fail("param node-selector is empty and no pool is named, which selects every node (the control "
                      "plane included); name the router's nodes, e.g. node-role.kubernetes.io/worker=")
        if params.pool in node_power.CONTROL_PLANE_POOLS and not params.allow_control_plane:
            read.fail(f"param pool={params.pool} is a control-plane pool; on a compact cluster set "
                      "allow-control-plane=true to mean it")
        read.done()
        return params

    @property
    def sriov_resources(self) -> list[str]:
        names = [self.resource_name] if self.resource_name else list(self.pf_names)
        return [f"openshift.io/{n}" for n in names]


@dataclass(frozen=True)
class Result:
    ready: bool


@dataclass
class Checks:
    """Each check's line, printed as it is decided, and the failures with their fixes."""

    log: Log
    failures: list[str] = field(default_factory=list)
    passed: int = 0

    def ok(self, what: str, detail: str) -> None:
        self.passed += 1
        self.log.info(f"PASS  {what}: {detail}")

    def fail(self, what: str, detail: str, fix: str = "") -> None:
        self.failures.append(f"{what}: {detail}" + (f"; fix: {fix}" if fix else ""))
        self.log.info(f"FAIL  {what}: {detail}")

    def skip(self, what: str, why: str) -> None:
        self.log.info(f"SKIP  {what}: {why}")

    def api_error(self, what: str, error: CssrError, verbs: str) -> None:
        fix = (f"give the pipeline's ServiceAccount {verbs}" if isinstance(error, Forbidden)
               else "check the API server and retry")
        self.fail(what, str(error), fix)


def run(params: Params, *, cluster: Cluster, log: Log) -> Result:
    checks = Checks(log)
    crds = check_crds(params, cluster, checks)
    nodes = check_nodes(params, cluster, checks)
    check_pools(params, cluster, nodes, checks)
    check_node_power(params, nodes, checks)
    check_hugepages(params, nodes, checks)
    check_sriov(params, cluster, nodes, checks, operator=crds)
    check_registry(params, cluster, log, checks)
    if checks.failures:
        listing = "\n".join(f"  - {f}" for f in checks.failures)
        raise CssrError(f"could not confirm that the cluster is ready: {len(checks.failures)} check(s) failed:\n"
                        f"{listing}")
    log.info(f"all {checks.passed} checks passed: the cluster is ready for cssr-deploy")
    return Result(ready=True)


def check_crds(params: Params, cluster: Cluster, checks: Checks) -> bool:
    """True when the SR-IOV operator's CRDs are all there."""
    wanted = dict(CRDS)
    if params.hugepages_method == "machineconfig":
        wanted[MACHINECONFIG_CRD[0]] = MACHINECONFIG_CRD[1]
    if params.hugepages_method == "performanceprofile":
        wanted[PERFORMANCE_CRD[0]] = PERFORMANCE_CRD[1]
    sriov = True
    for name, fix in wanted.items():
        what = f"CRD {name}"
        try:
            crd = cluster.get_or_none(CRD_API, "customresourcedefinitions", name)
        except CssrError as e:
            checks.api_error(what, e, "get on customresourcedefinitions (apiextensions.k8s.io)")
            sriov = sriov and "sriovnetwork" not in name
            continue
        if crd is None:
            checks.fail(what, "not installed", fix)
            sriov = sriov and "sriovnetwork" not in name
            continue
        conditions = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}
        established = conditions.get("Established")
        if established is not None and established.get("status") != "True":
            checks.fail(what, f"installed but not established ({established.get('message') or 'no message'})",
                        "check the operator's install (oc get csv -A) and the CRD's conditions")
            continue
        versions = [v.get("name") for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
        checks.ok(what, "installed" + (f", serves {', '.join(map(str, versions))}" if versions else ""))
    return sriov


def check_nodes(params: Params, cluster: Cluster, checks: Checks) -> list[dict[str, Any]]:
    """The Ready, schedulable target nodes (the ones the later checks count)."""
    what = "target nodes"
    selector = params.node_selector.strip()
    try:
        if params.pool:
            pool = cluster.get_or_none(MCO_API, "machineconfigpools", params.pool)
            if pool is None:
                checks.fail(what, f"MachineConfigPool {params.pool} not found", "name an existing pool (oc get mcp) "
                            "or leave pool empty and use node-selector")
                return []
            if not selector:  # the pool's own nodes; never every node
                selector = selectors.from_label_selector((pool.get("spec") or {}).get("nodeSelector"))
        nodes = cluster.list("v1", "nodes", label_selector=selector) if selector else []
    except CssrError as e:
        checks.api_error(what, e, "get and list on nodes and machineconfigpools")
        return []
    if not nodes:
        checks.fail(what, f"no node matches {selector!r}", "check node-selector or pool against "
                    "`oc get nodes --show-labels`")
        return []
    usable, problems = [], []
    for node in nodes:
        name = node["metadata"]["name"]
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (node.get("status") or {}).get("conditions") or [])
        if not ready:
            problems.append(f"{name} is not Ready")
        elif (node.get("spec") or {}).get("unschedulable"):
            problems.append(f"{name} is cordoned")
        else:
            usable.append(node)
    names = ", ".join(sorted(n["metadata"]["name"] for n in nodes))
    if problems and not usable:
        checks.fail(what, f"{len(nodes)} match {selector!r} ({names}), none usable: {'; '.join(problems)}",
                    "bring the nodes back (oc describe node) or select others")
    elif problems:
        checks.ok(what, f"{len(usable)} of {len(nodes)} usable ({'; '.join(problems)}); only those count below")
    else:
        checks.ok(what, f"{len(nodes)} Ready node(s) match {selector!r}: {names}")
    return usable


def check_pools(params: Params, cluster: Cluster, nodes: list[dict[str, Any]], checks: Checks) -> None:
    if not nodes:
        checks.skip("MachineConfigPool", "no usable target nodes")
        return
    try:
        pools = cluster.list(MCO_API, "machineconfigpools")
    except CssrError as e:
        checks.api_error("MachineConfigPool", e, "list on machineconfigpools")
        return
    if params.pool:
        problem = node_power.pool_problem(params.pool, nodes, pools)
        if problem:
            checks.fail(f"MachineConfigPool {params.pool}", problem)
            return
        pools = [p for p in pools if p["metadata"]["name"] == params.pool]
    else:
        pools = [p for p in pools if any(
            selectors.matches(selectors.from_label_selector((p.get("spec") or {}).get("nodeSelector")),
                              n["metadata"].get("labels")) for n in nodes)]
    if not pools:
        checks.fail("MachineConfigPool", "no pool selects the target nodes", "check `oc get mcp`; every OpenShift "
                    "node belongs to a pool")
        return
    for pool in pools:
        check_pool(params, pool, checks)


def check_node_power(params: Params, nodes: list[dict[str, Any]], checks: Checks) -> None:
    """What the pipeline would do to these nodes: never the control plane unasked, hugepages the nodes can spare."""
    what = "node power"
    if not nodes:
        checks.skip(what, "no usable target nodes")
        return
    problems = [node_power.control_plane_problem(nodes, params.allow_control_plane)]
    if params.hugepages_method != "none":
        page = {"2M": 2 * 2**20, "1G": 2**30}[params.hugepages_size]
        problems.append(node_power.hugepages_problem(
            nodes, Decimal(page * params.hugepages_count),
            f"hugepages-count={params.hugepages_count} pages of {params.hugepages_size}", quantity))
    found = [p for p in problems if p]
    for problem in found:
        checks.fail(what, problem)
    if not found:
        planes = ("control-plane nodes allowed by allow-control-plane=true" if params.allow_control_plane
                  else "no control-plane node among the targets")
        memory = "" if params.hugepages_method == "none" else "; the hugepages fit in each node's memory"
        checks.ok(what, planes + memory)


def check_pool(params: Params, pool: dict[str, Any], checks: Checks) -> None:
    name = pool["metadata"]["name"]
    what = f"MachineConfigPool {name}"
    status = pool.get("status") or {}
    conditions = {c.get("type"): c.get("status") == "True" for c in status.get("conditions") or []}
    total, updated = int(status.get("machineCount") or 0), int(status.get("updatedMachineCount") or 0)
    degraded = int(status.get("degradedMachineCount") or 0)
    paused = " (paused: it applies no new config)" if (pool.get("spec") or {}).get("paused") else ""
    if conditions.get("Degraded") or conditions.get("NodeDegraded") or degraded:
        checks.fail(what, f"degraded ({degraded} of {total} machines)", f"repair the degraded machines first "
                    f"(oc describe mcp {name}; oc get nodes)")
    elif conditions.get("Updating") or not conditions.get("Updated") or updated != total:
        detail = f"updating: {updated} of {total} machines on config " \
                 f"{(pool.get('spec') or {}).get('configuration', {}).get('name', '?')}"
        if params.allow_updating:
            checks.ok(what, f"{detail}; allowed by allow-updating=true{paused}")
        else:
            checks.fail(what, detail, f"wait for it (oc wait mcp/{name} --for condition=Updated --timeout=60m), or "
                        "set allow-updating=true to build for the upgrade target now")
    else:
        checks.ok(what, f"settled: {total} of {total} machines on {status.get('configuration', {}).get('name')}"
                  f"{paused}")


def _fits(nodes: list[dict[str, Any]], resource: str, each: Decimal) -> tuple[int, dict[str, str]]:
    """How many pods needing `each` of resource fit on the nodes, and what each node has."""
    room = 0
    have: dict[str, str] = {}
    for node in nodes:
        text = str(((node.get("status") or {}).get("allocatable") or {}).get(resource, "0"))
        try:
            amount = quantity(text)
        except ValueError:
            amount = Decimal(0)
        have[node["metadata"]["name"]] = text
        room += int(amount // each) if each else 0
    return room, have


def check_hugepages(params: Params, nodes: list[dict[str, Any]], checks: Checks) -> None:
    resource = HUGEPAGES[params.hugepages_size]
    what = f"hugepages {resource}"
    if not nodes:
        checks.skip(what, "no usable target nodes")
        return
    request = quantity(params.hugepages_request)
    room, have = _fits(nodes, resource, request)
    shown = ", ".join(f"{n}={v}" for n, v in sorted(have.items()))
    if room >= params.replicas:
        checks.ok(what, f"room for {room} pod(s) of {params.hugepages_request}, need {params.replicas} ({shown})")
    elif params.hugepages_method != "none":
        checks.ok(what, f"room for {room} of {params.replicas} pod(s) now ({shown}); apply-manifests configures them "
                  f"with a {params.hugepages_method} and waits for the pool")
    else:
        checks.fail(what, f"room for {room} pod(s) of {params.hugepages_request}, need {params.replicas} ({shown})",
                    "configure hugepages on the target nodes, or set hugepages-method=machineconfig so that "
                    "the pipeline does")


def check_sriov(params: Params, cluster: Cluster, nodes: list[dict[str, Any]], checks: Checks, *,
                operator: bool) -> None:
    what = "SR-IOV PFs"
    if not operator:
        checks.skip(what, "the SR-IOV operator is missing")
        return
    if not nodes:
        checks.skip(what, "no usable target nodes")
        return
    try:
        states = {s["metadata"]["name"]: s for s in cluster.list(SRIOV_API, "sriovnetworknodestates",
                                                                 namespace=SRIOV_NAMESPACE)}
    except CssrError as e:
        checks.api_error(what, e, f"list on sriovnetworknodestates in {SRIOV_NAMESPACE}")
        return
    missing, stateless, busy, failed = [], [], [], []
    for node in nodes:
        name = node["metadata"]["name"]
        state = states.get(name)
        if state is None:
            stateless.append(name)
            continue
        status = state.get("status") or {}
        present = {str(i.get("name")) for i in status.get("interfaces") or []}
        lacking = [pf for pf in params.pf_names if pf not in present]
        if lacking:
            missing.append(f"{name} lacks {', '.join(lacking)} (has {', '.join(sorted(present)) or 'none'})")
        sync = status.get("syncStatus")
        if sync == "Failed":
            failed.append(f"{name}: {status.get('lastSyncError') or 'no error given'}")
        elif sync == "InProgress":
            busy.append(name)
    pfs = ", ".join(params.pf_names)
    if stateless:
        checks.fail(what, f"no SriovNetworkNodeState for {', '.join(stateless)}: the SR-IOV config daemon does "
                    "not run there", "label the nodes feature.node.kubernetes.io/network-sriov.capable=true, or widen "
                    "spec.configDaemonNodeSelector of the default SriovOperatorConfig")
    if missing:
        checks.fail(what, "; ".join(missing), f"name PFs that exist on every target node in pf-names (oc get "
                    f"sriovnetworknodestates -n {SRIOV_NAMESPACE} -o yaml), or select only nodes that have {pfs}")
    if not missing and not stateless:
        checks.ok(what, f"{pfs} present on all {len(nodes)} target node(s)")
    state_what = "SR-IOV config daemon"
    if failed:
        checks.fail(state_what, "sync failed on " + "; ".join(failed), f"read the config daemon's log (oc logs -n "
                    f"{SRIOV_NAMESPACE} ds/sriov-network-config-daemon) and fix the policy it rejects")
    elif busy and not params.allow_updating:
        checks.fail(state_what, f"still applying a policy on {', '.join(busy)}", "wait for syncStatus Succeeded, or "
                    "set allow-updating=true")
    else:
        note = f"; applying on {', '.join(busy)} (allowed)" if busy else ""
        checks.ok(state_what, f"synced on the target nodes{note}")
    _check_vfs(params, nodes, checks)


def _check_vfs(params: Params, nodes: list[dict[str, Any]], checks: Checks) -> None:
    if params.network_mode != "sriov":
        checks.ok("SR-IOV resources", "none requested by the pods in network-mode macvlan (macvlan on VF 0)")
        return
    for resource in params.sriov_resources:
        what = f"SR-IOV resource {resource}"
        room, have = _fits(nodes, resource, Decimal(1))
        shown = ", ".join(f"{n}={v}" for n, v in sorted(have.items()))
        if room >= params.replicas:
            checks.ok(what, f"{room} VF(s) allocatable, need {params.replicas} ({shown})")
        else:
            checks.ok(what, f"{room} of {params.replicas} VF(s) allocatable now ({shown}); the SriovNetworkNodePolicy "
                      "that apply-manifests applies creates them")


def check_registry(params: Params, cluster: Cluster, log: Log, checks: Checks) -> None:
    from .registry import ImageRef, Registry

    if not params.image_repository.strip():
        checks.skip("registry", "image-repository is empty")
        return
    try:
        ref = ImageRef.parse(params.image_repository)
    except ConfigError as e:
        checks.fail("registry", str(e), "fix the image-repository and tls-verify params")
        return
    what = f"registry {ref.registry}"
    try:
        with Registry(ref.registry, tls_verify=params.tls_verify, log=log, retry=cluster.retry) as registry:
            digest = registry.manifest_digest(ref)
    except (Forbidden, NotFound) as e:  # it answered: the login is build-init-image's business
        checks.ok(what, f"reachable; it asks for a login ({e.status})")
        return
    except ConfigError as e:
        checks.fail(what, str(e))
        return
    except ApiError as e:  # its message already names the fix
        checks.fail(what, str(e))
        return
    found = f"{ref} exists ({digest})" if digest else f"{ref} is not pushed yet"
    checks.ok(what, f"reachable; {found}")
