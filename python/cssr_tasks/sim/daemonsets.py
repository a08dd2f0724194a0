"""The DaemonSet controller, simulated: a pod per matching node, rolled when the template changes.

What the real controller (kubernetes pkg/controller/daemon) does that our steps rely on:

- one pod per node that matches the pod template's nodeSelector, labelled with the template's
  `controller-revision-hash` and `pod-template-generation` (the DaemonSet's metadata.generation),
  owned by the DaemonSet;
- a node that comes to match gets its pod, one that stops matching loses it;
- a template change (a new generation) replaces each node's pod (updateStrategy RollingUpdate; the
  cssr-modules DaemonSet allows every node at once); a write that changes nothing replaces none;
- `status` with the fields of k8s.io/api apps/v1 DaemonSetStatus: currentNumberScheduled,
  numberMisscheduled, desiredNumberScheduled, numberReady, observedGeneration,
  updatedNumberScheduled, numberAvailable, numberUnavailable.

The kubelet's part: with no `runner` a pod's init containers complete at once and it gets Ready
(as the StatefulSet's pods of workloads.py do); with a `runner` (sim/pods.py, which the demo sets)
its init containers really run, in order, one pod at a time, on a folder per node, and the pod gets
Ready only when they all exited 0. A failed init container leaves the pod in CrashLoopBackOff with
the failure as lastState (no restart here). Nothing runs against a real cluster.
"""

from __future__ import annotations

import copy
import threading
import traceback
import uuid
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .workloads import Workloads

NOW = "2026-11-01T00:00:00Z"


class PodRunner(Protocol):
    def __call__(self, pod: dict[str, Any], update: Any) -> bool:
        """Run the pod's init containers; call update(status_changes) as they go; True when all exited 0."""


class DaemonSets:
    def __init__(self, workloads: Workloads) -> None:
        self.workloads = workloads
        self.runner: PodRunner | None = None
        self._serial = threading.Lock()  # one pod's containers at a time: they share this machine's paths

    def on_write(self, ds: dict[str, Any]) -> None:
        w = self.workloads
        meta, spec = ds["metadata"], ds["spec"]
        template = spec["template"]
        generation = str(meta.get("generation", 1))
        revision = _revision(template)
        nodes = {n["metadata"]["name"] for n in w._nodes(template["spec"].get("nodeSelector") or {})}
        for pod in self._pods(ds):
            node = pod["spec"].get("nodeName")
            labels = pod["metadata"].get("labels") or {}
            if node not in nodes or labels.get("pod-template-generation") != generation:
                w.store.delete(w._pod_key(meta["namespace"], pod))
        have = {p["spec"].get("nodeName") for p in self._pods(ds)}
        for node in sorted(nodes - have):
            pod = self._pod(ds, node, generation, revision)
            w._put(pod)
            if self.runner is None:
                self._finish(pod, ok=True)
            else:
                threading.Thread(target=self._run, args=(meta["namespace"], pod["metadata"]["name"]),
                                 daemon=True).start()
        self._count(ds)
        w._put(ds)

    def on_node(self, node: dict[str, Any]) -> None:
        """A node's labels changed (it joined or left the target set): each DaemonSet follows."""
        for ds in self.workloads._items("apps/v1", "DaemonSet"):
            self.on_write(ds)

    def _pods(self, ds: dict[str, Any]) -> list[dict[str, Any]]:
        uid = ds["metadata"].get("uid")
        return [p for p in self.workloads._items("v1", "Pod", ds["metadata"]["namespace"])
                if any(o.get("kind") == "DaemonSet" and o.get("uid") == uid
                       for o in p["metadata"].get("ownerReferences") or [])]

    def _pod(self, ds: dict[str, Any], node: str, generation: str, revision: str) -> dict[str, Any]:
        template = ds["spec"]["template"]
        name = f"{ds['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        init = [c["name"] for c in template["spec"].get("initContainers") or []]
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ds["metadata"]["namespace"],
                         "labels": {**template["metadata"].get("labels", {}), "controller-revision-hash": revision,
                                    "pod-template-generation": generation},
                         "annotations": dict(template["metadata"].get("annotations") or {}),
                         "ownerReferences": [self.workloads._owner(ds)]},
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": node},
            "status": {"phase": "Pending",
                       "conditions": [{"type": "Initialized", "status": "False"},
                                      {"type": "Ready", "status": "False"}],
                       "initContainerStatuses": [{"name": c, "ready": False, "restartCount": 0,
                                                  "state": {"waiting": {"reason": "PodInitializing"}}}
                                                 for c in init],
                       "containerStatuses": [{"name": c["name"], "ready": False, "restartCount": 0,
                                              "state": {"waiting": {"reason": "PodInitializing"}}}
                                             for c in template["spec"]["containers"]]},
        }

    # -- the kubelet's part ---------------------------------------------------------------

    def _run(self, namespace: str, name: str) -> None:
        w = self.workloads
        try:
            with self._serial:
                pod = w._get("v1", "Pod", name, namespace)
                if pod is None:
                    return
                ok = self.runner(pod, lambda change: self._update(namespace, name, change)) \
                    if self.runner is not None else True
            with w.store.lock:
                current = w._get("v1", "Pod", name, namespace)
                if current is not None:
                    self._finish(current, ok=ok)
        except Exception:
            w.errors.append(traceback.format_exc())

    def _update(self, namespace: str, name: str, change: dict[str, Any]) -> None:
        """One init container's new status (name, state, lastState) on the stored pod; its log to pods/log."""
        w = self.workloads
        with w.store.lock:
            pod = w._get("v1", "Pod", name, namespace)
            if pod is None:
                return
            log = change.pop("log", None)
            if log is not None:
                w.emulator.logs[(namespace, name, change["name"])] = log
            for status in pod["status"]["initContainerStatuses"]:
                if status["name"] == change["name"]:
                    status.update(change)
            w._put(pod)

    def _finish(self, pod: dict[str, Any], *, ok: bool) -> None:
        w = self.workloads
        status = pod["status"]
        if ok:
            for init in status["initContainerStatuses"]:
                if "terminated" not in init["state"]:
                    init["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": NOW,
                                                    "finishedAt": NOW}}
                init["ready"] = True
            for container in status["containerStatuses"]:
                container.update(ready=True, started=True, state={"running": {"startedAt": NOW}})
            status["phase"] = "Running"
            status["conditions"] = [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"},
                                    {"type": "ContainersReady", "status": "True"}]
        w._put(pod)
        owner = next(o for o in pod["metadata"]["ownerReferences"] if o["kind"] == "DaemonSet")
        ds = w._get("apps/v1", "DaemonSet", owner["name"], pod["metadata"]["namespace"])
        if ds is not None:
            self._count(ds)
            w._put(ds)

    def _count(self, ds: dict[str, Any]) -> None:
        w = self.workloads
        template = ds["spec"]["template"]
        generation = str(ds["metadata"].get("generation", 1))
        nodes = {n["metadata"]["name"] for n in w._nodes(template["spec"].get("nodeSelector") or {})}
        pods = self._pods(ds)
        scheduled = [p for p in pods if p["spec"].get("nodeName") in nodes]
        updated = [p for p in scheduled if p["metadata"]["labels"].get("pod-template-generation") == generation]
        ready = [p for p in scheduled if w._ready(p)]
        ds["status"] = {
            "currentNumberScheduled": len(scheduled), "numberMisscheduled": len(pods) - len(scheduled),
            "desiredNumberScheduled": len(nodes), "numberReady": len(ready),
            "observedGeneration": ds["metadata"].get("generation", 1), "updatedNumberScheduled": len(updated),
            "numberAvailable": len(ready), "numberUnavailable": len(nodes) - len(ready),
        }


def _revision(template: dict[str, Any]) -> str:
    from .workloads import _hash

    return _hash(template, 10)
