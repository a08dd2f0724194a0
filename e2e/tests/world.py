"""The part of an OpenShift world that apply-manifests reads before it writes, made by the admin
from the real CRDs: a worker Node, its MachineConfigPool, the SR-IOV operator's namespace, and
the OpenShift ClusterRoles the install binds without defining them (their rules are those of
tests/rbac.py PLATFORM, from OpenShift's bootstrap policy; the real RBAC escalation check needs
the role to exist before anyone may bind it).

Fields are those of the upstream types (core/v1 Node; machineconfiguration.openshift.io/v1
MachineConfigPool spec.machineConfigSelector and spec.nodeSelector, as in openshift/api
machineconfiguration/v1/types.go); nothing is set that a real object lacks.
"""

from __future__ import annotations

from typing import Any

from cssr_tasks.cluster import Cluster
from rbac import PLATFORM

WORKER = "e2e-worker-0"
SRIOV_NAMESPACE = "openshift-sriov-network-operator"


def objects() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": WORKER, "labels": {"node-role.kubernetes.io/worker": "",
                                                 "kubernetes.io/hostname": WORKER}}},
        {"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
         "metadata": {"name": "worker"},
         "spec": {"machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": "worker"}},
                  "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SRIOV_NAMESPACE}},
        *({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
           "rules": rules} for name, rules in PLATFORM.items()),
    ]


def make(admin: Cluster) -> None:
    for obj in objects():
        admin.apply(obj, field_manager="e2e-world")
