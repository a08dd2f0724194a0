"""The run mirrored into the simulated cluster as a PipelineRun and its TaskRuns.

The report task reads durations and results from TaskRuns, as it does on a real cluster, so
its code path is the real one. Objects are stored with `sim.put`, as the Tekton controller
would write them: they are not API requests of the run, so a test that asserts "this run
changed nothing" reads only what the steps did. Against a real cluster (`--kubeconfig`) the
executor writes no TaskRuns: a Tekton controller there would try to run them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .run import Outcome, RunInfo, TaskState

if TYPE_CHECKING:
    from ..sim import SimulatedCluster

API = "tekton.dev/v1"


def timestamp(when: datetime | None) -> str | None:
    """Kubernetes timestamps have whole seconds (metav1.Time)."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def _condition(status: str, reason: str, message: str, when: datetime | None) -> dict[str, Any]:
    return {"type": "Succeeded", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": timestamp(when)}


class SimRecorder:
    def __init__(self, sim: SimulatedCluster) -> None:
        self.sim = sim

    def _labels(self, run: RunInfo) -> dict[str, str]:
        return {"tekton.dev/pipeline": run.pipeline, "tekton.dev/pipelineRun": run.name,
                "app.kubernetes.io/managed-by": "cssr-tasks-pipeline-run"}

    def started(self, run: RunInfo) -> None:
        self.sim.put({
            "apiVersion": API, "kind": "PipelineRun",
            "metadata": {"name": run.name, "namespace": run.namespace, "uid": run.uid,
                         "labels": {"tekton.dev/pipeline": run.pipeline}},
            "spec": {"pipelineRef": {"name": run.pipeline}},
            "status": {"startTime": timestamp(run.started),
                       "conditions": [_condition("Unknown", "Running", "", run.started)]},
        })

    def _taskrun(self, run: RunInfo, state: TaskState) -> dict[str, Any]:
        labels = {**self._labels(run), "tekton.dev/pipelineTask": state.name}
        spec: dict[str, Any] = {"params": [{"name": k, "value": v} for k, v in state.params.items()],
                                "serviceAccountName": "pipeline"}
        if "(inline" not in state.task:
            labels["tekton.dev/task"] = state.task
            spec["taskRef"] = {"kind": "Task", "name": state.task}
        if state.is_finally:
            labels["tekton.dev/memberOf"] = "finally"
        else:
            labels["tekton.dev/memberOf"] = "tasks"
        return {
            "apiVersion": API, "kind": "TaskRun",
            "metadata": {"name": f"{run.name}-{state.name}", "namespace": run.namespace, "labels": labels,
                         "ownerReferences": [{"apiVersion": API, "kind": "PipelineRun", "name": run.name,
                                              "uid": run.uid, "controller": True}]},
            "spec": spec,
        }

    def task_started(self, run: RunInfo, state: TaskState) -> None:
        taskrun = self._taskrun(run, state)
        taskrun["status"] = {"podName": f"{run.name}-{state.name}-pod", "startTime": timestamp(state.started),
                             "conditions": [_condition("Unknown", "Running", "", state.started)]}
        self.sim.put(taskrun)

    def task_finished(self, run: RunInfo, state: TaskState) -> None:
        taskrun = self._taskrun(run, state)
        ok = state.status == "Succeeded"
        taskrun["status"] = {
            "podName": f"{run.name}-{state.name}-pod",
            "startTime": timestamp(state.started), "completionTime": timestamp(state.finished),
            "conditions": [_condition("True" if ok else "False", state.reason, state.message, state.finished)],
            "results": [{"name": k, "type": "string", "value": v} for k, v in state.results.items()],
            "retriesStatus": [{"conditions": [_condition("False", "Failed", "", None)]}
                              for _ in range(max(0, state.attempts - 1))],
        }
        self.sim.put(taskrun)

    def finished(self, run: RunInfo, outcome: Outcome) -> None:
        pipelinerun = self.sim.get(API, "PipelineRun", run.name, run.namespace) or {}
        status = dict(pipelinerun.get("status") or {})
        ok = outcome.status != "Failed"
        ended = max((s.finished for s in outcome.tasks if s.finished), default=run.started)
        status.update({
            "completionTime": timestamp(ended),
            "conditions": [_condition("True" if ok else "False", outcome.status, "", ended)],
            "childReferences": [{"apiVersion": API, "kind": "TaskRun", "name": f"{run.name}-{s.name}",
                                 "pipelineTaskName": s.name} for s in outcome.tasks if s.started],
            "skippedTasks": [{"name": s.name, "reason": s.reason} for s in outcome.tasks if s.status == "Skipped"],
            "results": [{"name": k, "value": v} for k, v in outcome.results.items()],
        })
        pipelinerun["status"] = status
        self.sim.put(pipelinerun)
