"""Small test controllers playing, on the real API server, the parts of OpenShift that Stage C's
world lacks: the kubelets of the stand-in nodes (their Lease and Ready heartbeat) and the SR-IOV
operator's making of a NetworkAttachmentDefinition per SriovNetwork.

They speak through the kubernetes client (cssr_tasks.cluster.Cluster) as the admin, in a thread
of the test session (tests/test_pipeline_run.py starts and stops them).

- NodeLeases: without a kubelet, kube-controller-manager's node lifecycle controller marks a node
  Unknown and taints it `unreachable` 40 s (node-monitor-grace-period) after the last heartbeat.
  A kubelet renews its Lease in kube-node-lease every 10 s (nodeLeaseDurationSeconds 40) and posts
  the Ready condition; this does both for the stand-ins, with the kubelet's own field values.
- SriovNetworks: the operator renders each SriovNetwork in openshift-sriov-network-operator into a
  NetworkAttachmentDefinition of the same name in spec.networkNamespace, annotated with the
  resource (as cssr_tasks.sim.workloads does, after sriov-network-operator's
  api/v1/helper.go RenderNetAttDef).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from cssr_tasks.cluster import Cluster
from cssr_tasks.errors import CssrError

from .log import say

LEASE_API = "coordination.k8s.io/v1"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
RENEW_SECONDS = 10.0
SRIOV_API = "sriovnetwork.openshift.io/v1"
SRIOV_NAMESPACE = "openshift-sriov-network-operator"
NAD_API = "k8s.cni.cncf.io/v1"
FIELD_MANAGER = "cssr-e2e-operators"


def now(micro: bool = False) -> str:
    stamp = time.time()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp))
    return f"{base}.{int(stamp % 1 * 1e6):06d}Z" if micro else f"{base}Z"


class Operators:
    """The controllers' loop in one daemon thread; stop() ends it."""

    def __init__(self, admin: Cluster, nodes: list[str], interval: float = 2.0) -> None:
        self.admin = admin
        self.nodes = nodes
        self.interval = interval
        self.errors: list[str] = []
        self.nads_made: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cssr-e2e-operators", daemon=True)
        self._last_renew = 0.0

    def start(self) -> Operators:
        self.renew()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if time.monotonic() - self._last_renew >= RENEW_SECONDS:
                    self.renew()
                self.networks()
            except CssrError as e:  # a transient API error: the next turn tries again
                self.errors.append(str(e))

    def renew(self) -> None:
        """Each stand-in's Lease renewed and its Ready condition's heartbeat posted, as its kubelet would."""
        self._last_renew = time.monotonic()
        for name in self.nodes:
            node = self.admin.get("v1", "nodes", name)
            # By path: Lease is no kind of the suite's (cssr_tasks.cluster.KINDS).
            self.admin.request(
                "PATCH", f"/apis/{LEASE_API}/namespaces/{LEASE_NAMESPACE}/leases/{name}",
                query={"fieldManager": FIELD_MANAGER, "force": "true"}, content_type="application/apply-patch+yaml",
                body={"apiVersion": LEASE_API, "kind": "Lease",
                      "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [{
                          "apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}]},
                      "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                               "renewTime": now(micro=True)}},
                what=f"renew the Lease of node {name}")
            conditions = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") != "Ready"]
            ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                         {})
            since = ready.get("lastTransitionTime") if ready.get("status") == "True" else now()
            conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                               "message": "kubelet is posting ready status (cssr-e2e stand-in: no kubelet)",
                               "lastHeartbeatTime": now(), "lastTransitionTime": since or now()})
            self.admin.patch("v1", "nodes", name, {"status": {"conditions": conditions}}, subresource="status",
                             patch_type="merge")

    def networks(self) -> None:
        for network in self.admin.list(SRIOV_API, "sriovnetworks", namespace=SRIOV_NAMESPACE):
            spec = network.get("spec") or {}
            name = network["metadata"]["name"]
            target = spec.get("networkNamespace") or SRIOV_NAMESPACE
            if self.admin.get_or_none(NAD_API, "network-attachment-definitions", name, target) is not None:
                continue
            config = {"cniVersion": "1.0.0", "name": name, "type": "sriov", "spoofchk": spec.get("spoofChk"),
                      "trust": spec.get("trust"), "ipam": json.loads(spec.get("ipam") or "{}")}
            self.admin.apply({"apiVersion": NAD_API, "kind": "NetworkAttachmentDefinition",
                              "metadata": {"name": name, "namespace": target, "annotations": {
                                  "k8s.v1.cni.cncf.io/resourceName": f"openshift.io/{spec.get('resourceName')}"}},
                              "spec": {"config": json.dumps(config)}}, field_manager=FIELD_MANAGER)
            self.nads_made.append(f"{target}/{name}")
            say(f"operators: NetworkAttachmentDefinition {target}/{name} made from SriovNetwork {name}")


def world(admin: Cluster, objects: list[dict[str, Any]]) -> None:
    """Objects applied as the admin; a Node's or pool's status goes through the status subresource
    (the API server drops status on create and apply of the main resource)."""
    for obj in objects:
        admin.apply(obj, field_manager=FIELD_MANAGER)
        if "status" in obj and obj["kind"] in ("Node", "MachineConfigPool", "SriovNetworkNodeState", "ImageStream"):
            api, name = obj["apiVersion"], obj["metadata"]["name"]
            plural = {"Node": "nodes", "MachineConfigPool": "machineconfigpools",
                      "SriovNetworkNodeState": "sriovnetworknodestates", "ImageStream": "imagestreams"}[obj["kind"]]
            admin.patch(api, plural, name, {"status": obj["status"]}, namespace=obj["metadata"].get("namespace"),
                        subresource="status")
