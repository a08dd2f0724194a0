"""What apply-manifests writes, run through the task's own functions up to its readiness gates."""

from __future__ import annotations

from typing import Any

from cssr_tasks import apply_manifests, manifests
from cssr_tasks.cluster import Cluster, kind_info
from cssr_tasks.log import Log


def params(namespace: str, **values: str) -> apply_manifests.Params:
    """The params a user gives the install's namespace: the router lives there too."""
    values = {"namespace": namespace, **values}
    return apply_manifests.Params.from_env({f"PARAM_{k.upper().replace('-', '_')}": v for k, v in values.items()})


def apply_all(p: apply_manifests.Params, cluster: Cluster, log: Log) -> list[bool]:
    apply_manifests.check_cluster(p, cluster, log)
    changed = []
    for manifest in manifests.render(p):
        if manifest.stage == "workload":
            apply_manifests.apply_statefulset(manifest, cluster, log)
        else:
            changed.append(apply_manifests.apply_one(manifest, cluster, log))
    return changed


def statefulset(namespace: str) -> tuple[str, str, str, str]:
    return ("apps/v1", "statefulsets", manifests.STATEFULSET, namespace)


def live(admin: Cluster, manifest: manifests.Manifest) -> dict[str, Any]:
    return admin.get(manifest.obj["apiVersion"], kind_info(manifest.kind)[0], manifest.name, manifest.namespace)
