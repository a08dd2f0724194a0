"""The control plane the harness starts is the real, pinned one, and its parts work together:
versions as pinned, the controller-manager making ServiceAccounts and publishing the root CA,
the scheduler judging pods, etcd new enough for Kubernetes 1.34."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from e2e.harness.build import COMPONENTS, pinned_version
from e2e.harness.layout import Layout, etcd_url

from cssr_tasks.cluster import Cluster


def _module_dir(name: str) -> Any:
    return next(c.module_dir for c in COMPONENTS if c.name == name)


def eventually(check: Any, timeout: float = 60.0) -> Any:
    began = time.monotonic()
    while True:
        value = check()
        if value or time.monotonic() - began > timeout:
            return value
        time.sleep(0.5)


def test_kubectl_version_shows_the_pinned_kubernetes(kubectl: Any) -> None:
    pinned = pinned_version(_module_dir("kube-apiserver"), "k8s.io/kubernetes")
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == pinned
    assert versions["clientVersion"]["gitVersion"] == pinned
    assert (versions["serverVersion"]["major"], versions["serverVersion"]["minor"]) == tuple(
        pinned.lstrip("v").split(".")[:2])


def test_etcd_is_the_pinned_release_and_new_enough(layout: Layout) -> None:
    with urllib.request.urlopen(f"{etcd_url()}/version", timeout=5) as response:
        served = json.loads(response.read())["etcdserver"]
    pinned = pinned_version(_module_dir("etcd"), "go.etcd.io/etcd/server/v3").lstrip("v")
    assert served == pinned
    # Kubernetes >= 1.31 needs RequestWatchProgress, which etcd has from 3.5.13 on.
    assert tuple(int(p) for p in served.split(".")) >= (3, 5, 13)


def test_controller_manager_gives_a_new_namespace_its_account_and_root_ca(admin: Cluster, namespace: str) -> None:
    account = eventually(lambda: admin.get_or_none("v1", "serviceaccounts", "default", namespace))
    assert account, "the serviceaccount controller made no default ServiceAccount"
    root_ca = eventually(lambda: admin.get_or_none("v1", "configmaps", "kube-root-ca.crt", namespace))
    assert root_ca and "BEGIN CERTIFICATE" in root_ca["data"]["ca.crt"]


def test_scheduler_judges_a_pod_it_cannot_place(admin: Cluster, namespace: str) -> None:
    # No kubelet in Stage A: the only node-like objects are fixtures, so the pod asks for a label
    # no node has; the scheduler's verdict proves it runs and reads the cluster.
    admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "judged", "namespace": namespace},
                  "spec": {"nodeSelector": {"e2e.cssr/nowhere": "true"},
                           "containers": [{"name": "c", "image": "registry.invalid/none:1"}]}})

    def verdict() -> dict[str, Any] | None:
        pod = admin.get("v1", "pods", "judged", namespace)
        return next((c for c in (pod.get("status") or {}).get("conditions") or []
                     if c["type"] == "PodScheduled"), None)

    condition = eventually(verdict)
    assert condition and condition["status"] == "False" and condition["reason"] == "Unschedulable"
