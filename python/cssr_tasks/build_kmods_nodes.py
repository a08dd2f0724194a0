"""modules-storage=hostpath: build, verify and index the modules on every target node's /mnt/cssr.

The last step of cssr-build-kmods. With modules-storage=pvc (the default) it does nothing: the
steps before it built on the ReadWriteMany claim. With hostpath, those steps did nothing, and this
one applies the `cssr-modules` DaemonSet (modules_daemonset.py), whose pod on each target node
runs the same layout, build, commit and verification on the node's hostPath, and waits, bounded,
until every scheduled pod of the DaemonSet's current generation is Ready (kubectl's own test for a
finished DaemonSet rollout, pkg/cmd/rollout/rollout_status.go). It then reports each node, and the
kernels built and modules verified, read from the pods' init containers' termination messages.

A run whose kernel set and settings are unchanged applies the same DaemonSet: no new generation, no
pod restarted, nothing built; it only checks that every node is still Ready.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import builder_params, modules_daemonset, selectors, waits
from .cluster import Cluster
from .deploy_params import MODULES_STORAGE
from .errors import ConfigError, CssrError
from .kmod_checks import DEFAULT_MODULES, read_folder, read_kernels, read_modules
from .log import Log
from .manifests import router_account
from .params import Reader, shown

MIN_POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class Params:
    modules_storage: str = "pvc"
    namespace: str = "cssr"
    node_selector: str = "node-role.kubernetes.io/worker="
    kernels: tuple[str, ...] = ()
    modules: tuple[str, ...] = DEFAULT_MODULES
    init_image: str = ""
    kmod_builder_image: str = "quay.io/juniper-128t/kmod-builder-51:5.1.2-1"
    tasks_image: str = "image-registry.openshift-image-registry.svc:5000/cssr/cssr-tasks:0.1.0"
    builder_command: str = builder_params.DEFAULT_BUILDER  # shell words, as the pods' build-kmods reads them
    builder_output: str = builder_params.DEFAULT_OUTPUT
    builder_root: str = "/"
    lock_timeout: int = 1800
    stale_after: int = 600
    nodes_timeout: float = 3600.0
    poll_interval: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        params = cls(
            modules_storage=read.choice("modules-storage", cls.modules_storage, MODULES_STORAGE),
            namespace=read.name("namespace", cls.namespace, hint="the router's namespace, such as cssr"),
            node_selector=read.selector("node-selector", cls.node_selector),
            kernels=read_kernels(read),
            modules=read_modules(read),
            init_image=read.image("init-image", cls.init_image),
            kmod_builder_image=read.image("kmod-builder-image", cls.kmod_builder_image),
            tasks_image=read.image("tasks-image", cls.tasks_image),
            builder_command=shlex.join(builder_params.read_command(read)),
            builder_output=read.string("builder-output", cls.builder_output),
            builder_root=read_folder(read, "builder-root", cls.builder_root),
            lock_timeout=read.integer("lock-timeout", cls.lock_timeout, minimum=0),
            stale_after=read.integer("stale-after", cls.stale_after, minimum=1),
            nodes_timeout=read.seconds("nodes-timeout", cls.nodes_timeout, minimum=1),
            poll_interval=read.seconds("poll-interval", cls.poll_interval, minimum=MIN_POLL_INTERVAL,
                                       maximum=600),
        )
        # the pods' build-kmods would refuse these: refuse them before any pod is rolled out
        problem = builder_params.output_problem(params.builder_output, params.builder_root,
                                                modules_daemonset.MODULES_DIR)
        if problem:
            read.fail(f"param builder-output={shown(params.builder_output)} {problem}")
        if params.modules_storage == "hostpath":
            if not params.init_image:
                read.fail("param init-image is empty; pass build-init-image's image-url")
            if any(t.operator not in ("=", "==") for t in selectors.parse(params.node_selector)):
                read.fail(f"param node-selector={shown(params.node_selector)} must hold key=value terms only with "
                          "modules-storage=hostpath: it becomes the DaemonSet pods' nodeSelector")
        read.done()
        return params

    def settings(self) -> modules_daemonset.Settings:
        selector = {t.key: t.values[0] for t in selectors.parse(self.node_selector)}
        return modules_daemonset.Settings(
            namespace=self.namespace, node_selector=selector, kernels=self.kernels, modules=self.modules,
            init_image=self.init_image, kmod_builder_image=self.kmod_builder_image, tasks_image=self.tasks_image,
            builder_command=self.builder_command, builder_output=self.builder_output,
            builder_root=self.builder_root, lock_timeout=self.lock_timeout, stale_after=self.stale_after)


def NEEDS_CLUSTER(params: Params) -> bool:  # cli reads the module attribute by this name
    """pvc: the step does nothing, and needs no cluster (nor a kubeconfig) to do it."""
    return params.modules_storage == "hostpath"


@dataclass(frozen=True)
class Result:
    # None: not written (modules-storage=pvc: the commit and verify steps wrote them)
    built_kernels: list[str] | None
    modules: dict[str, Any] | None


def run(params: Params, *, cluster: Cluster | None, log: Log) -> Result:
    if params.modules_storage != "hostpath":
        log.info("modules-storage=pvc: the modules were built and verified on the modules workspace; no node work")
        return Result(built_kernels=None, modules=None)
    assert cluster is not None, "NEEDS_CLUSTER is true for modules-storage=hostpath"
    ns = params.namespace
    _ensure_account(cluster, ns, log)
    wanted = modules_daemonset.render(params.settings())
    before = cluster.get_or_none("apps/v1", "daemonsets", modules_daemonset.NAME, ns)
    after = cluster.apply(wanted)
    generation = int(after["metadata"].get("generation") or 1)
    set_id = wanted["spec"]["template"]["metadata"]["annotations"][modules_daemonset.KERNEL_SET_ANNOTATION]
    what = f"DaemonSet {ns}/{modules_daemonset.NAME}"
    rolled = before is None or int(before["metadata"].get("generation") or 1) != generation
    if before is None:
        log.info(f"created {what} (generation {generation}, kernel set {set_id}): a pod per target node lays out, "
                 f"builds and verifies on the node's {modules_daemonset.HOST_PATH}")
    elif rolled:
        log.info(f"updated {what} to generation {generation} (kernel set {set_id}): its pods run again on every "
                 "target node")
    else:
        log.info(f"unchanged {what} (generation {generation}, kernel set {set_id}): no pod restarts, nothing builds")
    pods = _wait_ready(cluster, ns, generation, params, log)
    return _summary(pods, rolled, log)


def _ensure_account(cluster: Cluster, namespace: str, log: Log) -> None:
    """The router's account (PoC step 3), which the pods run as: apply-manifests makes it too, but later."""
    for manifest in router_account(namespace):
        kind = manifest.obj["kind"]
        plural = "serviceaccounts" if kind == "ServiceAccount" else "rolebindings"
        if cluster.get_or_none(manifest.obj["apiVersion"], plural, manifest.name, namespace) is None:
            cluster.apply(manifest.obj)
            log.info(f"created {manifest} for the DaemonSet's pods")


def _wait_ready(cluster: Cluster, namespace: str, generation: int, params: Params,
                log: Log) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in modules_daemonset.SELECTOR.items())
    hint = (f"see `oc get pods -n {namespace} -l {selector} -o wide` and the failing container's log "
            f"(`oc logs -n {namespace} POD -c CONTAINER`)")

    def ours() -> list[dict[str, Any]]:
        found = cluster.list("v1", "pods", namespace=namespace, label_selector=selector)
        return [p for p in found
                if (p["metadata"].get("labels") or {}).get(modules_daemonset.GENERATION_LABEL) == str(generation)]

    def check() -> list[dict[str, Any]]:
        ds = cluster.get("apps/v1", "daemonsets", modules_daemonset.NAME, namespace)
        status = ds.get("status") or {}
        if int(status.get("observedGeneration") or 0) < generation:
            raise waits.NotYet("the DaemonSet controller has not seen the new generation yet",
                               what="the DaemonSet's generation observed", reason="not observed", hint=hint)
        desired = int(status.get("desiredNumberScheduled") or 0)
        if desired == 0:
            raise CssrError(f"could not build on the nodes: DaemonSet {namespace}/{modules_daemonset.NAME} "
                            f"schedules no pod; no node matches node-selector={params.node_selector!r} (or every "
                            "match has a taint the router does not tolerate)")
        updated, ready = int(status.get("updatedNumberScheduled") or 0), int(status.get("numberReady") or 0)
        if updated >= desired and ready >= desired:
            pods = ours()
            if len(pods) >= desired and all(_ready(p) for p in pods):
                return pods
        problems = [_pod_problem(p) for p in ours() if not _ready(p)]
        reason = f"{ready} of {desired} node(s) ready, {updated} on generation {generation}" + (
            f"; {'; '.join(problems)}" if problems else "")
        raise waits.NotYet(f"waiting for the modules on every target node: {reason}",
                           what="the modules verified on every target node", reason=reason, hint=hint)

    log.info(f"waiting for the modules on every target node (at most {params.nodes_timeout:g}s)")
    with log.timed("the nodes' builds"):
        return waits.wait_until(check, clock=waits.Clock(params.nodes_timeout), interval=params.poll_interval,
                                log=log)


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _pod_problem(pod: dict[str, Any]) -> str:
    """Where a pod is: the init container it is in, and the last failure's first line."""
    node = (pod.get("spec") or {}).get("nodeName") or "(unscheduled)"
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        state = status.get("state") or {}
        last = ((status.get("lastState") or {}).get("terminated") or {})
        failed = last.get("message") or last.get("reason") or ""
        detail = f" (last exit {last.get('exitCode')}: {failed.strip().splitlines()[-1]})" if failed.strip() else ""
        if "running" in state:
            return f"{node}: init container {status.get('name')} running{detail}"
        if "waiting" in state:
            return f"{node}: init container {status.get('name')} {state['waiting'].get('reason', 'waiting')}{detail}"
    return f"{node}: pod {pod['metadata']['name']} {(pod.get('status') or {}).get('phase', 'Pending')}"


def _message(pod: dict[str, Any], container: str) -> Any:
    """The JSON an init container left as its termination message, or None."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") == container:
            text = ((status.get("state") or {}).get("terminated") or {}).get("message") or ""
            try:
                return json.loads(text)
            except ValueError:
                return None
    return None


def _summary(pods: list[dict[str, Any]], rolled: bool, log: Log) -> Result:
    built: set[str] = set()
    modules: dict[str, Any] = {}
    for pod in sorted(pods, key=lambda p: str((p.get("spec") or {}).get("nodeName"))):
        node = (pod.get("spec") or {}).get("nodeName")
        verified = _message(pod, "verify")
        made = _message(pod, "commit") if rolled else []
        if not isinstance(verified, dict):
            raise CssrError(f"could not read what node {node}'s pod {pod['metadata']['name']} verified: its verify "
                            "container left no JSON termination message; check the pod's tasks image")
        made = [k for k in made if isinstance(k, str)] if isinstance(made, list) else []
        built |= set(made)
        for kernel, files in verified.items():
            modules.setdefault(kernel, files)
        log.info(f"node {node}: verified {', '.join(sorted(verified)) or 'no kernel'}"
                 f"{'; built ' + ', '.join(made) if made else '; built nothing'}")
    if not pods:
        raise ConfigError("could not build on the nodes: the DaemonSet has no pod; check node-selector")
    log.info(f"{len(pods)} node(s) hold verified, indexed modules on {modules_daemonset.HOST_PATH}")
    return Result(built_kernels=sorted(built), modules=modules)
