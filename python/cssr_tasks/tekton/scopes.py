"""The names a `$(...)` reference resolves in: the pipeline's (params, tasks' results and statuses,
workspaces, context) and a task's (its params, results, workspaces, steps, context).

Before the run, results and statuses are placeholders of their declared type, so that a misspelled
name fails with its file and line; during the run the same scopes hold the real values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import Map, Pipeline, PipelineTask, ResultSpec
from .refs import AnyDict, AnyList, Level, Unavailable, Wildcard, expand_known
from .state import DataReader, Options, RunInfo, TaskState
from .steps import can_mount


class Scopes:
    """The executor's scopes (a part of Executor, run.py)."""

    options: Options
    pipeline: Pipeline
    params: dict[str, Any]
    workspaces: dict[str, Path]
    run: RunInfo
    states: dict[str, TaskState]
    checking: bool  # True while the run is checked: no cluster reads, no folders
    read_data: DataReader | None

    def _read_only(self, pt: PipelineTask, workspace: str) -> bool:
        declared = pt.task.workspaces.get(workspace)
        binding = next((b for b in pt.workspaces if b.get("name") == workspace), None)
        return bool((declared and declared.read_only) or (binding and binding.get("readOnly")))

    def _mount_path(self, pt: PipelineTask, workspace: str) -> str:
        declared = pt.task.workspaces.get(workspace)
        return declared.mount_path if declared else f"/workspace/{workspace}"

    @staticmethod
    def _step_name(step: Map, index: int) -> str:
        return str(step.get("name") or f"unnamed-{index}")

    def _result_value(self, pt: PipelineTask, spec: ResultSpec, placeholders: bool) -> Any:
        if placeholders:  # a string placeholder keeps its "$(": an image named by a result is checked later
            return placeholder(spec.type, spec.properties) if spec.type != "string" else \
                f"$(tasks.{pt.name}.results.{spec.name})"
        state = self.states[pt.name]
        if spec.name not in state.results:
            why = {"Skipped": f"it was skipped ({state.message})", "Failed": "it failed",
                   "Succeeded": "it succeeded without writing it"}.get(state.status, "it has not run")
            return Unavailable(f"task {pt.name} did not produce result {spec.name}: {why}", missing=True)
        value = state.results[spec.name]
        if spec.type in ("array", "object"):
            try:
                return json.loads(value)
            except ValueError:
                return Unavailable(f"result {spec.name} of task {pt.name} is declared {spec.type} but holds no "
                                   "JSON", missing=True)
        return value

    def _tasks_level(self, tasks: Sequence[PipelineTask], placeholders: bool, statuses: bool) -> dict[str, Any]:
        items: dict[str, Any] = {}
        for other in tasks:
            if other.refused:
                items[other.name] = Wildcard()
                continue
            results = Level(f"task {other.name} (Task {other.task.name}) declares no result {{name}}",
                            {r: self._result_value(other, spec, placeholders)
                             for r, spec in other.task.results.items()})
            entries: dict[str, Any] = {"results": results}
            state = self.states[other.name]
            if statuses:
                entries["status"] = "Succeeded" if placeholders else state.tekton_status
                entries["reason"] = "Succeeded" if placeholders else (state.reason or "None")
            else:
                entries["status"] = entries["reason"] = Unavailable(
                    f"$(tasks.{other.name}.status) is only available in finally tasks")
            items[other.name] = Level(f"tasks.{other.name} has no {{name}}", entries)
        return items

    def _pipeline_scope(self, pt: PipelineTask, *, placeholders: bool) -> Level:
        tasks = self._tasks_level(self.pipeline.tasks, placeholders, statuses=pt.is_finally)
        tasks["status"] = (("Succeeded" if placeholders else self.aggregate_status()) if pt.is_finally
                           else Unavailable("$(tasks.status) is only available in finally tasks"))
        return self._scope(tasks, retries=pt.retries)

    def _results_scope(self, *, placeholders: bool) -> Level:
        scope = self._scope(self._tasks_level(self.pipeline.tasks, placeholders, statuses=True), retries=0)
        items = dict(scope.items)
        items["finally"] = Level("the pipeline has no finally task {name}",
                                 self._tasks_level(self.pipeline.finally_tasks, placeholders, statuses=True))
        return Level(scope.missing, items)

    def _scope(self, tasks: dict[str, Any], retries: int) -> Level:
        run = self.run
        return Level("there is no variable root {name}", {
            "params": Level(f"the pipeline {self.pipeline.name} declares no param {{name}}", self.params),
            "tasks": Level(f"the pipeline {self.pipeline.name} has no task {{name}}", tasks),
            "workspaces": Level("the pipeline declares no workspace {name}", {
                w: Level(f"workspaces.{w} has no {{name}} here", {
                    "bound": "true" if w in self.workspaces else "false",
                    "path": f"$(workspaces.{w}.path)"})  # as in Tekton, the TaskRun substitutes it
                # any workspace's path, the task's own included (a param may name the task's workspace)
                for w in self.pipeline.workspaces}, literal=lambda rest: rest == ["path"]),
            "context": Level("there is no context variable {name}", {
                "pipelineRun": Level("context.pipelineRun has no {name}", {
                    "name": run.name, "namespace": run.namespace, "uid": run.uid}),
                "pipeline": Level("context.pipeline has no {name}", {"name": self.pipeline.name}),
                "pipelineTask": Level("context.pipelineTask has no {name}", {"retries": str(retries)}),
            }, literal=_any),
        })

    def _task_scope(self, pt: PipelineTask, params: Mapping[str, Any], workspaces: Mapping[str, Path | None],
                    folder: Path, attempt: int, *, outer: Level | None = None) -> Level:
        task = pt.task
        taskrun = f"{self.run.name}-{pt.name}"
        context = Level("there is no context variable {name} in a Task", {
            "taskRun": Level("context.taskRun has no {name}", {
                "name": taskrun, "namespace": self.run.namespace, "uid": str(uuid.uuid4())}),
            # an embedded taskSpec has no Task name: Tekton gives the TaskRun's
            "task": Level("context.task has no {name}", {"name": taskrun if task.inline else task.name,
                                                         "retry-count": str(attempt - 1)}),
        }, literal=_any)  # Tekton validates context.task.* and context.taskRun.*; it leaves context.other as is
        names = list(task.workspaces) + [w for w in workspaces if w not in task.workspaces]
        later = {
            "results": Level(f"Task {task.name} declares no result {{name}}", {
                r: Level(f"results.{r} has no {{name}}; use results.{r}.path", {"path": str(folder / "results" / r)})
                for r in task.results}),
            "workspaces": Level(f"Task {task.name} declares no workspace {{name}}", {
                w: Level(f"workspaces.{w} has no {{name}}", {
                    "path": self._workspace_path(pt, w, workspaces.get(w)),
                    "bound": "true" if w in workspaces and (workspaces[w] or self.checking) else "false",
                    "claim": "", "volume": w})
                for w in names}),
            "context": context,
        }
        # Tekton substitutes params first, then context, results and workspaces in what they inserted:
        # a default may use $(context...), a pipeline task's param $(workspaces.<the task's>.path)
        params = {k: expand_known(v, Level("", later)) if isinstance(v, str) else v for k, v in params.items()}
        items: dict[str, Any] = {
            "params": Level(f"Task {task.name} declares no param {{name}}", params),
            "inputs": Level("inputs has no {name}; write $(params.x)", {
                "params": Level(f"Task {task.name} declares no param {{name}}",
                                {k: v for k, v in params.items() if isinstance(v, str)})}),
            **later,
            "steps": Level(f"Task {task.name} has no step {{name}}", {
                f"step-{self._step_name(s, i)}": Level("steps.step-x has no {name}", {
                    "exitCode": Level("exitCode has no {name}", {
                        "path": str(folder / "steps" / f"step-{self._step_name(s, i)}" / "exitCode")})})
                for i, s in enumerate(task.steps)}),
        }
        if task.inline and outer is not None:  # an embedded taskSpec sees the pipeline's task results
            items["tasks"] = outer.items["tasks"]
        return Level("there is no variable root {name} in a Task", items)

    def _workspace_path(self, pt: PipelineTask, workspace: str, folder: Path | None) -> str:
        """Where a step finds the workspace: its folder; a readOnly one at its read-only mount."""
        if folder is None:
            return "" if not self.checking else f"/workspace/{workspace}"
        return self._mount_path(pt, workspace) if self._read_only(pt, workspace) and can_mount() else str(folder)

    def aggregate_status(self) -> str:
        states = [self.states[t.name] for t in self.pipeline.tasks]
        if any(s.status == "Failed" for s in states):
            return "Failed"
        if any(s.status == "Skipped" for s in states):
            return "Completed"
        return "Succeeded" if all(s.status == "Succeeded" for s in states) else "None"


def _any(_rest: list[Any]) -> bool:
    return True


def placeholder(kind: str, properties: Sequence[str] = ()) -> Any:
    if kind == "array":
        return AnyList()
    if kind == "object":
        return AnyDict({p: "" for p in properties})
    return ""
