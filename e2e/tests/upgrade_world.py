"""Stage D's world for the scripted upgrade: a pool of kubelet-less stand-in RHCOS nodes whose kernels
are real Debian kbuild trees (harness/world_d.py), the Driver Toolkit stream the CVO updates, and the
suite installed as users install it, with the upgrade trigger: the real EventListener (Tekton
Triggers, Stage D) and the pool watcher as the Deployment of triggers/watcher.yaml.

The pool is `worker-du` (a realtime-capable pool of its own, so that Stage C's `worker-cnf` world
is untouched); its nodes are `rhcos-standin-du-<i>`, tainted like Stage C's: every pod of the runs
and of the trigger runs on the real node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import installs
import triggers_world
import yaml
from e2e.harness import mco, operators, standins, tasks_image, world_c, world_d
from e2e.harness.layout import Layout

from cssr_tasks import pool_events, watch_params
from cssr_tasks.cluster import Cluster
from cssr_tasks.sim import fixtures

from conftest import NOT_SERVED, wait_for

POOL = "worker-du"
ROLE_LABEL = f"node-role.kubernetes.io/{POOL}"
PREFIX = "rhcos-standin-du"
NODES = 2
NAMESPACE_PREFIX = "cssr-upgrade-"
WATCHER = "cssr-watch-pools"
EVENTLISTENER_DEPLOYMENT = "el-cssr-deploy"
SCRATCH_VOLUMES = 8  # one build-context claim per run: the first run and four triggered ones, with room
EVENT_ID_LABEL = watch_params.EVENT_ID_LABEL
KEY_LABEL = watch_params.KEY_LABEL


@dataclass
class World:
    namespace: str
    releases: dict[str, tuple[str, str, str]]
    dtk_digests: dict[str, str]
    mco: Any
    operators: operators.Operators
    secret: str


def nodes(releases: dict[str, tuple[str, str, str]], release: str, config: str) -> list[dict[str, Any]]:
    rhcos, kernel, _ = releases[release]
    made = []
    for i in range(NODES):
        node = fixtures.node(f"{PREFIX}-{i}", kernel=kernel, rhcos=rhcos, role=POOL,
                             allocatable={"hugepages-2Mi": "16Gi", "openshift.io/ens6f0np0": "7",
                                          "openshift.io/ens6f1np1": "7"}, config=config)
        node["metadata"]["annotations"]["cssr-e2e/stand-in"] = "no kubelet: a Node object for the pipeline to target"
        node["spec"] = {"taints": [world_c.TAINT]}
        made.append(node)
    return made


def settings(dtk_buildah: str) -> list[dict[str, Any]]:
    """What a user of this cluster writes in settings.yaml and the trigger's pool lists; plus the
    two Task defaults this machine needs (Stage C's: the buildah stand-in, a short rollout timeout)."""
    return [
        installs.pipeline_defaults({
            "node-selector": f"{ROLE_LABEL}=", "pool": POOL,
            "router-image": standins.router_ref(), "kmod-builder-image": standins.kmod_builder_ref(),
            "kmod-builder-command": "/usr/bin/dpdk_build.sh /",
            "image-registry": world_c.POD_REGISTRY, "registry-tls-verify": "false",
            "init-base-image": installs.base_image(), "hugepages-method": "none", "poll-interval": "2",
            "tasks-image": tasks_image.tasks_ref()}),
        installs.task_defaults("cssr-build-init-image", {"buildah-image": dtk_buildah}),
        installs.task_defaults("cssr-apply-manifests", {"rollout-timeout": "30"}),
        *installs.trigger_pools([POOL]),
    ]


def clean_earlier(admin: Cluster, kubectl: Any, namespace: str) -> None:
    for ns in admin.list("v1", "namespaces"):
        name = ns["metadata"]["name"]
        if name.startswith(NAMESPACE_PREFIX) and name != namespace:
            kubectl("delete", "namespace", name, "--wait=false", check=False)
    for pv in admin.list("v1", "persistentvolumes", label_selector="cssr-e2e/pv"):
        if pv["metadata"]["labels"]["cssr-e2e/pv"].startswith(NAMESPACE_PREFIX) and \
                pv["metadata"]["labels"]["cssr-e2e/pv"] != namespace:
            admin.delete("v1", "persistentvolumes", pv["metadata"]["name"])


def install(layout: Layout, admin: Cluster, kubectl: Any, folder: Path, namespace: str) -> World:
    releases = world_d.releases()
    digests = {release: image["digest"] for release, image in world_d.images(layout).items()}
    c_images = world_c.images(layout)
    upgrades = mco.stand_in(admin, releases)
    config = upgrades.render(POOL, release="4.16")
    upgrades.members[POOL] = [f"{PREFIX}-{i}" for i in range(NODES)]
    made = nodes(releases, "4.16", config)
    operators.world(admin, [
        *made, fixtures.pool(POOL, machine_count=NODES, config=config, node_selector={ROLE_LABEL: ""}),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "openshift"}},
        *world_d.driver_toolkit(digests, latest="4.16"), *world_c.sriov_states(made)])
    upgrades.render(POOL, release="4.16")  # again, now that its pool exists to own it
    running = operators.Operators(admin, upgrades.members[POOL]).start()

    kubectl("create", "namespace", namespace)
    token = triggers_world.make_secret(layout, namespace)
    buildah = f"{world_c.buildah_ref()}@{c_images['standin/buildah']['digest']}"
    rendered = [d for d in yaml.safe_load_all(kubectl("kustomize", str(installs.overlay(
        folder, namespace, settings(buildah)))).stdout) if d]
    served = [d for d in rendered if d["kind"] not in NOT_SERVED]
    kubectl("apply", "--server-side", "--field-manager=e2e-installer", "-f", "-", stdin=yaml.safe_dump_all(served))
    for pv in (world_c.modules_volume(namespace), world_c.data_volume(namespace),
               *(world_c.scratch_volume(namespace, f"s{i}") for i in range(SCRATCH_VOLUMES))):
        admin.apply(pv, field_manager=operators.FIELD_MANAGER)
    return World(namespace, releases, digests, upgrades, running, token)


def available(admin: Cluster, namespace: str, name: str) -> bool:
    deployment = admin.get_or_none("apps/v1", "deployments", name, namespace)
    status = (deployment or {}).get("status") or {}
    return bool(deployment) and status.get("availableReplicas", 0) >= 1 and \
        status.get("observedGeneration") == deployment["metadata"].get("generation") and \
        status.get("updatedReplicas", 0) >= 1


def sent_events(admin: Cluster, namespace: str) -> list[dict[str, Any]]:
    """The watcher's records of what it sent (its state ConfigMap), oldest first."""
    state = admin.get_or_none("v1", "configmaps", "cssr-watch-pools-state", namespace)
    records = pool_events.sent_records((state or {}).get("data") or {})
    return sorted(records.values(), key=lambda r: str(r.get("sentAt")))


def runs(admin: Cluster, namespace: str) -> list[dict[str, Any]]:
    return admin.list("tekton.dev/v1", "pipelineruns", namespace=namespace)


def finished(run: dict[str, Any]) -> bool:
    conditions = (run.get("status") or {}).get("conditions") or []
    return bool(conditions) and conditions[0].get("status") != "Unknown"


def wait_event(admin: Cluster, namespace: str, kind: str, after: int, timeout: float = 180.0) -> dict[str, Any]:
    """The watcher's next record of an event of `kind`, beyond the first `after` records."""
    def found() -> dict[str, Any] | None:
        records = sent_events(admin, namespace)[after:]
        return next((r for r in records if r.get("type") == kind), None)
    return wait_for(f"the watcher's {kind} event", found, timeout=timeout, interval=1)


def stamp(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time (the API server's, or the watcher's sentAt)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
