"""Detect the kernel set of the target nodes, their RHCOS versions and Driver Toolkit images.

The set, not one kernel: during an upgrade, and with realtime pools, nodes run several
kernels, and each needs its own modules. With `include-upgrade-target`, the kernel of the
newest Driver Toolkit (the release the cluster is moving to) joins the set, so that its
modules exist before the first node reboots into it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import kernels, selectors
from .cluster import Cluster
from .errors import ConfigError, CssrError, NotFound
from .log import Log
from .params import Reader

NEEDS_CLUSTER = True
DTK_NAMESPACE = "openshift"
DTK_STREAM = "driver-toolkit"
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        params = cls(
            node_selector=read.string("node-selector", cls.node_selector),
            pool=read.pool(),
            include_upgrade_target=read.boolean("include-upgrade-target", True),
            allow_mixed_kernels=read.boolean("allow-mixed-kernels", True),
            dtk_source=read.choice("dtk-source", "internal", ("internal", "upstream")),
            kernel_type=read.choice("kernel-type", "", ("default", "realtime", "64k-pages")),
        )
        if not params.pool:
            try:
                selectors.parse(params.node_selector)
            except ConfigError as e:
                read.fail(str(e))
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
    for node in nodes:
        name = node["metadata"]["name"]
        info = (node.get("status") or {}).get("nodeInfo") or {}
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
    dtk = dtk_by_rhcos(stream, internal=params.dtk_source == "internal") if stream else {}
    if stream is None:
        log.info(f"ImageStream {DTK_NAMESPACE}/{DTK_STREAM} not found: no Driver Toolkit images and no "
                 "upgrade target (is this OpenShift?)")

    all_kernels = set(by_kernel)
    if params.include_upgrade_target and stream is not None:
        realtime = params.kernel_type == "realtime" or any(kernels.is_realtime(k) for k in by_kernel)
        for kernel, version in upgrade_targets(cluster, stream, by_kernel, log, realtime=realtime).items():
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


def dtk_by_rhcos(stream: dict[str, Any], *, internal: bool = True) -> dict[str, str]:
    """RHCOS version -> Driver Toolkit pull spec; resolved status items win over spec tags.

    `internal` names the image through the cluster's registry (`<repository>@<digest>`), which the
    pipeline's ServiceAccount token can pull: every authenticated user may pull from the
    `openshift` namespace, and the registry pulls through from quay.io with the cluster's pull
    secret. The upstream reference needs that pull secret in the build step itself.
    """
    images: dict[str, str] = {}
    status = stream.get("status") or {}
    repository = status.get("dockerImageRepository")
    for tag in (stream.get("spec") or {}).get("tags") or []:
        source = tag.get("from") or {}
        if tag.get("name") != "latest" and source.get("kind") == "DockerImage" and source.get("name"):
            images[tag["name"]] = source["name"]
    for tag in status.get("tags") or []:
        items = tag.get("items") or []
        if tag.get("tag") == "latest" or not items:
            continue
        if internal and repository and items[0].get("image"):
            images[tag["tag"]] = f"{repository}@{items[0]['image']}"
        elif items[0].get("dockerImageReference"):
            images[tag["tag"]] = items[0]["dockerImageReference"]
    return images


def upgrade_targets(cluster: Cluster, stream: dict[str, Any], by_kernel: Mapping[str, list[str]],
                    log: Log, *, realtime: bool) -> dict[str, str | None]:
    """Kernel(s) of the newest Driver Toolkit: the standard one, and the realtime one for realtime pools
    (nodes that run RT, or a pool switching to kernelType realtime, whose nodes still run the standard one)."""
    tag = cluster.get_or_none(IMAGE_API, "imagestreamtags", f"{DTK_STREAM}:latest", DTK_NAMESPACE)
    image = (tag or {}).get("image") or {}
    labels = ((image.get("dockerImageMetadata") or {}).get("Config") or {}).get("Labels") or {}
    if not labels.get("kernel-version"):
        log.info(f"ImageStreamTag {DTK_NAMESPACE}/{DTK_STREAM}:latest has no kernel-version label; "
                 "no upgrade target added")
        return {}
    version = _rhcos_of_image(stream, (image.get("metadata") or {}).get("name"))
    targets: dict[str, str | None] = {kernels.normalize(labels["kernel-version"]): version}
    if realtime and labels.get("kernel-rt-version"):
        targets[kernels.normalize(labels["kernel-rt-version"])] = version
    for kernel in targets:
        state = "already running" if kernel in by_kernel else "added as the upgrade target"
        log.info(f"newest Driver Toolkit kernel {kernel}: {state}")
    return targets


def _rhcos_of_image(stream: dict[str, Any], image: str | None) -> str | None:
    for tag in (stream.get("status") or {}).get("tags") or []:
        if tag.get("tag") != "latest" and any(i.get("image") == image for i in tag.get("items") or []):
            return str(tag["tag"])
    return None


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")



