"""Every manifest the deploy params render: the PoC's steps 1 to 8, as data.

Shared by `cssr-tasks render` (offline) and `cssr-tasks apply-manifests` (server-side apply), which
are task modules and so never import each other. Templates are YAML skeletons kept as package data
(`templates/`): they are loaded with `yaml.safe_load` and every value is set on the resulting dicts,
never by text substitution, so no param can inject YAML. A skeleton marks each value it expects
with `null`; a rendered object that still holds one is a bug, caught before anything is written.
The params themselves, and their checks, are in `deploy_params`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from .deploy_params import HUGEPAGES, Params, dns_name, parse_quantity
from .errors import CssrError

__all__ = ["HUGEPAGES", "LABELS", "NETWORKS_ANNOTATION", "ROUTER_CONTAINER", "SRIOV_NAMESPACE", "STAGES",
           "STATEFULSET", "Manifest", "Params", "parse_quantity", "render", "router_account", "skeleton",
           "to_yaml"]

SRIOV_NAMESPACE = "openshift-sriov-network-operator"
NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
STATEFULSET = "cssr"
ROUTER_CONTAINER = "128t"
# Apply order: what the namespace's objects depend on comes first, the workload last.
STAGES = ("cluster", "namespace", "rbac", "networks", "storage", "workload")
LABELS = {"app": "cssr", "app.kubernetes.io/managed-by": "cssr-deploy"}
HOST_MODULES_PATH = "/mnt/cssr"  # modules-storage=hostpath: each node's copy (the PoC's later version)


def vf0_netdev(pf: str) -> str:
    """The host netdev of a PF's VF 0, as udev names it: ens6f0np0 -> ens6f0v0, ens1f0 -> ens1f0v0."""
    return re.sub(r"np\d+$", "", pf) + "v0"



@dataclass(frozen=True)
class Manifest:
    stage: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        namespace = self.obj["metadata"].get("namespace")
        return str(namespace) if namespace else None

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"




@cache
def _skeleton(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def skeleton(name: str) -> dict[str, Any]:
    return copy.deepcopy(_skeleton(name))


def render(params: Params) -> list[Manifest]:
    """Every object of the deployment, in apply order. Pure: no cluster, no files."""
    manifests = [*_hugepages(params), Manifest("namespace", _namespace(params)), *_rbac(params),
                 *_networks_manifests(params), Manifest("workload", _statefulset(params))]
    if params.modules_storage == "pvc":  # hostpath: no claim (an existing one is never deleted)
        manifests.append(Manifest("storage", _modules_claim(params)))
    for manifest in manifests:
        labels = manifest.obj["metadata"].setdefault("labels", {})
        for key, value in LABELS.items():
            labels.setdefault(key, value)
        _check_filled(manifest.obj, str(manifest))
    return sorted(manifests, key=lambda m: STAGES.index(m.stage))


def _check_filled(value: Any, what: str, path: str = "") -> None:
    if value is None:
        raise CssrError(f"template bug: {what} has no value at {path or '/'}; please report this")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_filled(item, what, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_filled(item, what, f"{path}[{i}]")


def _hugepages(p: Params) -> list[Manifest]:
    size = p.hugepages_size
    if p.hugepages_method == "machineconfig":
        mc = skeleton("machineconfig-hugepages.yaml")
        mc["metadata"]["name"] = f"05-{p.pool}-kernelarg-hugepages"
        mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"] = p.pool
        mc["spec"]["kernelArguments"] = [f"default_hugepagesz={size}", f"hugepagesz={size}",
                                         f"hugepages={p.hugepages_count}", *p.kernel_args]
        return [Manifest("cluster", mc)]
    if p.hugepages_method == "performanceprofile":
        profile = skeleton("performanceprofile.yaml")
        profile["metadata"]["name"] = f"cssr-{p.pool}"
        spec = profile["spec"]
        spec["cpu"].update(reserved=p.cpu_reserved, isolated=p.cpu_isolated)
        spec["hugepages"]["defaultHugepagesSize"] = size
        spec["hugepages"]["pages"][0].update(size=size, count=p.hugepages_count)
        if p.kernel_args:
            spec["additionalKernelArgs"] = list(p.kernel_args)
        else:
            del spec["additionalKernelArgs"]
        spec["nodeSelector"] = p.node_selector_map()
        spec["machineConfigPoolSelector"] = {f"pools.operator.machineconfiguration.openshift.io/{p.pool}": ""}
        return [Manifest("cluster", profile)]
    return []


def _namespace(p: Params) -> dict[str, Any]:
    namespace = skeleton("namespace.yaml")
    namespace["metadata"]["name"] = p.namespace
    return namespace


def _rbac(p: Params) -> list[Manifest]:
    # No PoC step 4 (system:image-puller on the images namespace): since decision 7 the pods run
    # router-image only and pull no cssr-init image from the internal registry.
    return router_account(p.namespace)


def router_account(namespace: str) -> list[Manifest]:
    """The router's ServiceAccount and its SCC binding (PoC step 3); the modules DaemonSet runs as it too."""
    account = skeleton("serviceaccount.yaml")
    account["metadata"]["namespace"] = namespace
    scc = skeleton("scc-rolebinding.yaml")
    scc["metadata"]["namespace"] = namespace
    scc["subjects"][0]["namespace"] = namespace
    for obj in (account, scc):
        obj["metadata"]["labels"] = dict(LABELS)
    return [Manifest("rbac", account), Manifest("rbac", scc)]


def _networks_manifests(p: Params) -> list[Manifest]:
    found = []
    selector = p.node_selector_map()
    for resource, pfs in p.sriov_resources().items():
        policy = skeleton("sriov-policy.yaml")
        policy["metadata"]["name"] = f"cssr-{dns_name(resource)}"
        spec = policy["spec"]
        spec.update(nodeSelector=selector, resourceName=resource, numVfs=p.num_vfs, deviceType=p.device_type)
        # macvlan mode: VF 0 stays a host netdev, the master of the macvlan network
        spec["nicSelector"]["pfNames"] = [f"{pf}#1-{p.num_vfs - 1}" if p.network_mode == "macvlan" else pf
                                          for pf in pfs]
        found.append(Manifest("networks", policy))
    for name, resource in p.sriov_networks().items():
        network = skeleton("sriov-network.yaml")
        network["metadata"]["name"] = name
        network["spec"].update(resourceName=resource, networkNamespace=p.namespace)
        found.append(Manifest("networks", network))
    for name, pf in p.macvlan_networks().items():
        nad = skeleton("macvlan-nad.yaml")
        cni = nad.pop("cni")
        cni.update(name=name, master=vf0_netdev(pf))
        nad["metadata"].update(name=name, namespace=p.namespace)
        nad["spec"]["config"] = json.dumps(cni, indent=2)
        found.append(Manifest("networks", nad))
    return found


def _storage(spec: dict[str, Any], storage_class: str, size: str) -> None:
    spec["resources"]["requests"]["storage"] = size
    if storage_class:
        spec["storageClassName"] = storage_class
    else:
        del spec["storageClassName"]  # the cluster's default StorageClass


def _modules_claim(p: Params) -> dict[str, Any]:
    claim = skeleton("modules-pvc.yaml")
    claim["metadata"]["namespace"] = p.namespace
    _storage(claim["spec"], p.modules_storage_class, p.modules_size)
    return claim


def _statefulset(p: Params) -> dict[str, Any]:
    sts = skeleton("statefulset.yaml")
    sts["metadata"]["namespace"] = p.namespace
    spec = sts["spec"]
    spec["replicas"] = p.replicas
    template = spec["template"]
    template["metadata"]["annotations"][NETWORKS_ANNOTATION] = json.dumps(p.pod_networks())
    pod = template["spec"]
    if selector := p.node_selector_map():
        pod["nodeSelector"] = selector
    else:
        del pod["nodeSelector"]
    containers = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    # Nothing of the kernel set (no cssr-init image, no kernel): a new set restarts no router pod.
    waiter = containers["wait-modules"]
    waiter["image"] = p.router_image
    next(e for e in waiter["env"] if e["name"] == "CSSR_MODULES")["value"] = ",".join(p.modules)
    containers["cssr-init-data"]["image"] = p.router_image
    router = containers[ROUTER_CONTAINER]
    router["image"] = p.router_image
    # hugepages need requests == limits; with a memory value too the pod is Guaranteed (exclusive CPUs)
    amounts = {"cpu": p.cpu, **({"memory": p.memory} if p.memory else {}),
               p.hugepages_resource: p.hugepages_request,
               **{f"openshift.io/{res}": str(count) for res, count in sorted(p.vf_requests().items())}}
    router["resources"] = {"requests": dict(amounts), "limits": dict(amounts)}
    _storage(spec["volumeClaimTemplates"][0]["spec"], p.data_storage_class, p.data_size)
    if p.modules_storage == "hostpath":
        # the node's folder that the cssr-modules DaemonSet fills (modules_daemonset.py), same name and subPaths
        volume = next(v for v in pod["volumes"] if v["name"] == "modules")
        del volume["persistentVolumeClaim"]
        volume["hostPath"] = {"path": HOST_MODULES_PATH, "type": "DirectoryOrCreate"}
    return sts


def to_yaml(obj: Mapping[str, Any]) -> str:
    """One object as block YAML, with multi-line strings (scripts, CNI JSON) as literal blocks."""
    return yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
