"""Detect the kernel set of the target nodes, their RHCOS versions and Driver Toolkit images.

The set, not one kernel: during an upgrade, and with realtime pools, nodes run several
kernels, and each needs its own modules. With `include-upgrade-target`, the kernel of the
newest Driver Toolkit (the release the cluster is moving to) joins the set, so that its
modules exist before the first node reboots into it. That kernel is read from the image's
/etc/driver-toolkit-release.json (driver_toolkit.py), unless the nodes run that release already.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import driver_toolkit, kernels, selectors
from .cluster import Cluster
from .driver_toolkit import NAMESPACE as DTK_NAMESPACE
from .driver_toolkit import STREAM as DTK_STREAM
from .errors import ConfigError, CssrError, NotFound
from .log import Log
from .params import Reader
from .registry_refs import read_docker_config

NEEDS_CLUSTER = True
IMAGE_API = "image.openshift.io/v1"
MCO_API = "machineconfiguration.openshift.io/v1"


@dataclass(frozen=True)
class Params:
    node_selector: str = field(default="node-role.kubernetes.io/worker=", metadata={
        "help": "label selector of the target nodes"})
    pool: str = field(default="", metadata={"help": "MachineConfigPool whose nodeSelector replaces node-selector"})
    include_upgrade_target: bool = True
    allow_mixed_kernels: bool = True
    dtk_source: str = "internal"
    kernel_type: str = ""
    docker_config: str = field(default="", metadata={
        "help": "docker config.json, or a directory holding config.json or .dockerconfigjson"})
    tls_verify: bool | str = field(default=True, metadata={"help": "true, false, or the path of a CA bundle"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        params = cls(
            node_selector=read.selector("node-selector", cls.node_selector),
            pool=read.pool(),
            include_upgrade_target=read.boolean("include-upgrade-target", True),
            allow_mixed_kernels=read.boolean("allow-mixed-kernels", True),
            dtk_source=read.choice("dtk-source", "internal", ("internal", "upstream")),
            kernel_type=read.choice("kernel-type", "", ("default", "realtime", "64k-pages")),
            docker_config=read_docker_config(read, environ),
            tls_verify=read.tls_verify(),
        )
        read.done()
        return params


@dataclass(frozen=True)
class Result:
    kernel_versions: list[str]
    kernel_set_id: str
    primary_kernel: str
    rhcos_versions: dict[str, str]
    dtk_images: dict[str, str]
    node_count: int


def run(params: Params, *, cluster: Cluster, log: Log) -> Result:
    selector = target_selector(params, cluster, log)
    nodes = cluster.list("v1", "nodes", label_selector=selector)
    if not nodes:
        raise ConfigError(f"no node matches the selector {selector!r}; check the node-selector or pool param "
                          "against `oc get nodes --show-labels`")
    log.info(f"found {len(nodes)} node(s) matching {selector!r}")

    by_kernel: dict[str, list[str]] = defaultdict(list)
    rhcos: dict[str, str] = {}
    architectures: set[str] = set()
    for node in nodes:
        name = node["metadata"]["name"]
        info = (node.get("status") or {}).get("nodeInfo") or {}
        architectures.add(str(info.get("architecture") or "amd64"))
        kernel = kernels.normalize(str(info.get("kernelVersion") or ""))
        if not kernel:
            raise CssrError(f"node {name} reports no kernel version (status.nodeInfo.kernelVersion is empty); "
                            "check that its kubelet is up with `oc describe node " + name + "`")
        by_kernel[kernel].append(name)
        version = kernels.rhcos_version(str(info.get("osImage") or ""))
        if version:
            rhcos.setdefault(kernel, version)
    for kernel, names in sorted(by_kernel.items()):
        rt = " (realtime)" if kernels.is_realtime(kernel) else ""
        log.info(f"kernel {kernel}{rt} on {len(names)} node(s): {_names(names)}; RHCOS {rhcos.get(kernel, '?')}")

    if len(by_kernel) > 1 and not params.allow_mixed_kernels:
        detail = "; ".join(f"{k} on {_names(v)}" for k, v in sorted(by_kernel.items()))
        raise CssrError(f"the target nodes run {len(by_kernel)} kernels ({detail}) and allow-mixed-kernels is "
                        "false; wait for the pool's update to finish, or set allow-mixed-kernels=true")

    counts = {k: len(v) for k, v in by_kernel.items()}
    stream = cluster.get_or_none(IMAGE_API, "imagestreams", DTK_STREAM, DTK_NAMESPACE)
    internal = params.dtk_source == "internal"
    dtk = driver_toolkit.images_by_rhcos(stream, internal=internal) if stream else {}
    if stream is None:
        log.info(f"ImageStream {DTK_NAMESPACE}/{DTK_STREAM} not found: no Driver Toolkit images and no "
                 "upgrade target (is this OpenShift?)")

    all_kernels = set(by_kernel)
    if params.include_upgrade_target and stream is not None:
        realtime = params.kernel_type == "realtime" or any(kernels.is_realtime(k) for k in by_kernel)
        reader = driver_toolkit.ReleaseReader(log, docker_config=params.docker_config, tls_verify=params.tls_verify)
        found = upgrade_targets(stream, rhcos, reader, log, realtime=realtime, internal=internal,
                                architectures=sorted(architectures))
        for kernel, version in found.items():
            all_kernels.add(kernel)
            if version:
                rhcos.setdefault(kernel, version)

    images = {k: dtk[v] for k, v in rhcos.items() if k in all_kernels and v in dtk}
    for kernel in sorted(all_kernels - set(images)):
        if stream is not None:
            log.warn(f"no Driver Toolkit image for kernel {kernel} (RHCOS {rhcos.get(kernel, 'unknown')}); "
                     "builds for it will fail until the tag exists")
    versions = kernels.kernel_set(all_kernels)
    result = Result(
        kernel_versions=versions,
        kernel_set_id=kernels.kernel_set_id(versions),
        primary_kernel=kernels.primary(counts),
        rhcos_versions={k: v for k, v in rhcos.items() if k in all_kernels},
        dtk_images=images,
        node_count=len(nodes),
    )
    log.info(f"kernel set {result.kernel_set_id}: {', '.join(versions)}; primary kernel {result.primary_kernel}")
    return result


def target_selector(params: Params, cluster: Cluster, log: Log) -> str:
    if not params.pool:
        return params.node_selector
    try:
        pool = cluster.get(MCO_API, "machineconfigpools", params.pool)
    except NotFound:
        raise ConfigError(f"MachineConfigPool {params.pool} not found; list the pools with `oc get mcp`") from None
    selector = selectors.from_label_selector((pool.get("spec") or {}).get("nodeSelector"))
    log.info(f"pool {params.pool} selects nodes with {selector!r}")
    return selector


def upgrade_targets(stream: dict[str, Any], rhcos: Mapping[str, str], reader: driver_toolkit.ReleaseReader,
                    log: Log, *, realtime: bool, internal: bool, architectures: list[str]) -> dict[str, str | None]:
    """Kernel(s) of the newest Driver Toolkit: the standard one, and the realtime one for realtime pools
    (nodes that run RT, or a pool switching to kernelType realtime, whose nodes still run the standard one).

    When nodes run the release of `latest` already, their kernels are its kernels (the Driver Toolkit
    of an RHCOS version is built for that version's kernels) and nothing is read from the registry.
    """
    tag = driver_toolkit.latest(stream, internal=internal)
    if tag is None:
        log.info(f"ImageStream {DTK_NAMESPACE}/{DTK_STREAM} has no resolved latest tag; no upgrade target added")
        return {}
    running = [k for k, v in rhcos.items() if v == tag.rhcos]
    if any(not kernels.is_realtime(k) for k in running) and (
            not realtime or any(kernels.is_realtime(k) for k in running)):
        log.info(f"newest Driver Toolkit is RHCOS {tag.rhcos}, which nodes run already: its kernels are in the set")
        return {}
    targets: dict[str, str | None] = {}
    for architecture in architectures:
        release = reader.read(tag.reference, architecture=architecture, internal=tag.internal)
        if release is None:
            continue
        wanted = [release.kernel] + ([release.rt_kernel] if realtime else [])
        targets.update((kernel, tag.rhcos) for kernel in wanted if kernel)
        if realtime and not release.rt_kernel:
            log.warn(f"{driver_toolkit.RELEASE_FILE} of {tag.reference} names no RT_KERNEL_VERSION; the realtime "
                     "target kernel is not added")
    for kernel in targets:
        state = "already running" if kernel in rhcos else "added as the upgrade target"
        log.info(f"newest Driver Toolkit kernel {kernel}: {state}")
    return targets


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")



