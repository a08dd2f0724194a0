"""The operators a cSSR cluster has installed, as the API shows them: their CRDs and SR-IOV node states.

    sim.load(operators.objects(sim.objects("v1", "Node")))   # or: operators.install(sim)

- SR-IOV Network Operator (sriovnetwork.openshift.io), with one SriovNetworkNodeState per
  worker, made by sim.workloads.node_state so that both modules describe the same NICs;
- Multus's NetworkAttachmentDefinition (k8s.cni.cncf.io);
- the Machine Config Operator (machineconfiguration.openshift.io);
- the Node Tuning Operator's PerformanceProfile (performance.openshift.io), present on every
  OpenShift 4.11+ cluster.

CRDs carry the Established condition a real API server sets. Their schemas preserve unknown
fields: the real schemas are pinned in crds/go.mod and used by the lint tests, never copied here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import SimulatedCluster
from .workloads import DEFAULT_NICS, node_state

WORKER_ROLE = "node-role.kubernetes.io/worker"


def crd(group: str, kind: str, plural: str, *, versions: Iterable[str] = ("v1",), storage: str = "v1",
        namespaced: bool = True, short_names: Iterable[str] = ()) -> dict[str, Any]:
    names = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
             "shortNames": list(short_names)}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "names": names, "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [{"name": v, "served": True, "storage": v == storage,
                          "schema": {"openAPIV3Schema": {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True}},
                          "subresources": {"status": {}}} for v in versions],
        },
        "status": {
            "acceptedNames": names, "storedVersions": [storage],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": "2026-11-01T00:00:00Z"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": "2026-11-01T00:00:00Z"},
            ],
        },
    }


def crds(*, performance_profile: bool = True) -> list[dict[str, Any]]:
    sriov = "sriovnetwork.openshift.io"
    mco = "machineconfiguration.openshift.io"
    found = [
        crd(sriov, "SriovNetworkNodePolicy", "sriovnetworknodepolicies"),
        crd(sriov, "SriovNetwork", "sriovnetworks"),
        crd(sriov, "SriovNetworkNodeState", "sriovnetworknodestates"),
        crd(sriov, "SriovOperatorConfig", "sriovoperatorconfigs"),
        crd("k8s.cni.cncf.io", "NetworkAttachmentDefinition", "network-attachment-definitions",
            short_names=["net-attach-def"]),
        crd(mco, "MachineConfig", "machineconfigs", namespaced=False, short_names=["mc"]),
        crd(mco, "MachineConfigPool", "machineconfigpools", namespaced=False, short_names=["mcp"]),
        crd(mco, "KubeletConfig", "kubeletconfigs", namespaced=False),
    ]
    if performance_profile:
        found.append(crd("performance.openshift.io", "PerformanceProfile", "performanceprofiles",
                         versions=("v1alpha1", "v1", "v2"), storage="v2", namespaced=False))
    return found


def objects(nodes: Iterable[dict[str, Any]], *, performance_profile: bool = True) -> list[dict[str, Any]]:
    """The CRDs, and a synced SriovNetworkNodeState (PFs ens6f0np0, ens6f1np1) for each worker.

    `nodes` may be any list of objects (e.g. default_cluster()'s): only Nodes count.
    """
    states = [node_state(n["metadata"]["name"], dict(DEFAULT_NICS)) for n in nodes
              if n.get("kind") == "Node" and WORKER_ROLE in (n["metadata"].get("labels") or {})]
    return crds(performance_profile=performance_profile) + states


def install(sim: SimulatedCluster) -> None:
    """A `--sim-fixture` hook: `cssr-tasks pipeline run --simulated --sim-fixture cssr_tasks.sim.operators:install`."""
    sim.load(objects(sim.objects("v1", "Node")))
