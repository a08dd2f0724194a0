"""The executor: check the whole run first, then run tasks in DAG order, then finally tasks.

Tekton semantics kept here (tektoncd/pipeline docs/pipelines.md and pipelinerunresolution.go):
- after a task fails, no new task starts (reason PipelineRunStopping); finally tasks still run;
- a task whose `when` is false is skipped alone: tasks after it by runAfter still run, tasks
  that need its results are skipped (MissingResultsSkip), and so are their dependents;
- a task that needs a result its producer succeeded without writing fails
  (InvalidTaskResultReference); a finally task in that case is skipped;
- `$(tasks.status)` is Failed, Completed (some skipped) or Succeeded; the run ends Failed if
  any task or finally task failed, Completed if any was skipped, else Succeeded;
- retries re-run the whole task with fresh results; `timeout` bounds each attempt.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import string
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..errors import ConfigError, CssrError
from ..log import Log
from . import dag, results, summary
from .model import (
    ON_ERROR,
    Map,
    ParamSpec,
    Pipeline,
    PipelineTask,
    Problems,
    ResultSpec,
    line_of,
    load_pipeline,
    normalize,
    parse_cli_value,
    parse_duration,
    type_error,
)
from .refs import AnyDict, AnyList, Expander, Level, Unavailable, Wildcard, expand_known
from .steps import Launcher, Mount, Runner, StepSpec, can_mount, runner_for
from .unsupported import refuse

_RESULT_PATH = re.compile(r"\$\(results\.([^.)]*)\.path\)")


@dataclass
class Options:
    file: Path
    params: Mapping[str, str] = field(default_factory=dict)
    workspaces: Mapping[str, Path] = field(default_factory=dict)
    tasks_dirs: Sequence[Path] = ()
    image_commands: Mapping[str, str] = field(default_factory=dict)
    kubeconfig: Path | None = None
    namespace: str = "cssr"
    name: str | None = None
    run_dir: Path | None = None
    results_dir: Path | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    # the documents of `file`, when the caller has read (or wrapped) them already: lines still name `file`
    documents: Sequence[Map] | None = None


@dataclass
class RunInfo:
    name: str
    namespace: str
    uid: str
    pipeline: str
    started: datetime


@dataclass
class TaskState:
    name: str
    task: str
    is_finally: bool
    status: str = "Pending"  # Succeeded | Failed | Skipped
    reason: str = ""
    message: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    started: datetime | None = None
    finished: datetime | None = None
    duration: float | None = None
    attempts: int = 0
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def tekton_status(self) -> str:
        """What `$(tasks.<name>.status)` gives: Succeeded, Failed or None."""
        return self.status if self.status in ("Succeeded", "Failed") else "None"


@dataclass
class Outcome:
    run: RunInfo
    status: str  # Succeeded | Completed | Failed
    tasks: list[TaskState]
    results: dict[str, Any]
    duration: float
    run_dir: Path

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "Failed" else 0

    def task(self, name: str) -> TaskState:
        return next(t for t in self.tasks if t.name == name)


# reads a Secret (data decoded) or a ConfigMap: (kind, name, namespace) -> data, None when absent
DataReader = Callable[[str, str, str], dict[str, str] | None]


class Recorder(Protocol):
    """Where the run is mirrored as Tekton objects (the simulated cluster), for the report task."""

    def started(self, run: RunInfo) -> None: ...
    def task_started(self, run: RunInfo, state: TaskState) -> None: ...
    def task_finished(self, run: RunInfo, state: TaskState) -> None: ...
    def finished(self, run: RunInfo, outcome: Outcome) -> None: ...


def run_name(pipeline: str) -> str:
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return f"{pipeline}-run-{suffix}"


class Executor:
    def __init__(self, options: Options, *, out: TextIO, recorder: Recorder | None = None,
                 read_data: DataReader | None = None) -> None:
        self.options = options
        self.out = out
        self.log = Log("pipeline", out)
        self.recorder = recorder
        self.read_data = read_data
        self.checking = True  # no cluster reads, no folders, while the run is checked
        problems = Problems()
        self.pipeline: Pipeline = load_pipeline(options.file, options.tasks_dirs, problems, options.documents)
        self.order = dag.order(self.pipeline, problems)
        self.params = self._pipeline_params(problems)
        self.workspaces = self._pipeline_workspaces(problems)
        self.run = RunInfo(name=options.name or run_name(self.pipeline.name), namespace=options.namespace,
                           uid=str(uuid.uuid4()), pipeline=self.pipeline.name, started=datetime.now(UTC))
        self.states = {t.name: TaskState(t.name, t.task.name, t.is_finally) for t in self.pipeline.all_tasks}
        self.run_dir = Path(options.run_dir or "/nonexistent")
        self._check(problems)
        problems.raise_if_any(f"pipeline {self.pipeline.name} from {options.file}")
        self.checking = False

    # -- before the run -------------------------------------------------------------------

    def _pipeline_params(self, problems: Problems) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, text in self.options.params.items():
            spec = self.pipeline.params.get(name)
            if spec is None:
                known = ", ".join(self.pipeline.params) or "none"
                problems.add("--param", 0, f"the pipeline declares no param {name} (known: {known})")
                continue
            try:
                value = normalize(parse_cli_value(spec, text))
            except ConfigError as e:
                problems.add("--param", 0, str(e))
                continue
            error = type_error(spec, value)
            if error:
                problems.add("--param", 0, f"{name} {error}")
            values[name] = value
        for spec in self.pipeline.params.values():
            if spec.name not in values:
                if spec.has_default:
                    values[spec.name] = normalize(spec.default)
                else:
                    problems.add(self.pipeline.file, spec.line, f"param {spec.name} has no default; pass "
                                 f"--param {spec.name}=VALUE")
        return values

    def _pipeline_workspaces(self, problems: Problems) -> dict[str, Path]:
        bound: dict[str, Path] = {}
        for name, folder in self.options.workspaces.items():
            if name not in self.pipeline.workspaces:
                known = ", ".join(self.pipeline.workspaces) or "none"
                problems.add("--workspace", 0, f"the pipeline declares no workspace {name} (known: {known})")
                continue
            bound[name] = Path(folder).resolve()
        for spec in self.pipeline.workspaces.values():
            if spec.name not in bound and not spec.optional:
                problems.add(self.pipeline.file, spec.line, f"workspace {spec.name} is not bound; pass "
                             f"--workspace {spec.name}=DIR")
        return bound

    def _check(self, problems: Problems) -> None:
        """Everything a run can know before it starts: references, params, workspaces, images."""
        expand = Expander(problems)
        for pt in self.pipeline.all_tasks:
            if pt.refused:  # its refusal is recorded; what follows from the refused feature is not a problem
                continue
            scope = self._pipeline_scope(pt, placeholders=True)
            for expression in pt.when:
                self._when(pt, expression, scope, expand)
            params = self._bind_params(pt, scope, expand, problems)
            workspaces = self._bind_workspaces(pt, scope, expand, problems, create=False)
            if not can_mount():
                for w in workspaces:
                    if self._read_only(pt, w):
                        refuse(problems, self.pipeline.file, pt.line, f"pipeline task {pt.name} workspace {w}",
                               "readonly-workspace-without-root")
            task_scope = self._task_scope(pt, params, {w: None for w in workspaces}, Path("/tekton/run"),
                                          attempt=1, outer=scope)
            for step in self._steps(pt, task_scope, expand):
                self._check_step(pt, step, problems)
                if "$(" in step.image:
                    continue  # named by a result: checked when the task starts
                runner = runner_for(step, self.options.image_commands)
                if isinstance(runner, str):
                    problems.add(pt.task.file, step.line, f"Task {pt.task.name}, step {step.name}: {runner}")
        for result in self.pipeline.results:
            expand(result.value, self._results_scope(placeholders=True), self.pipeline.file, result.line)

    def _check_step(self, pt: PipelineTask, step: StepSpec, problems: Problems) -> None:
        where = f"Task {pt.task.name} step {step.name}"
        for text in [step.script or "", *step.args, *(step.command or [])]:
            for name in _RESULT_PATH.findall(text):  # Tekton's admission checks these names too
                if name not in pt.task.results:
                    problems.add(pt.task.file, step.line, f"{where}: $(results.{name}.path) names no declared "
                                 "result; Tekton's admission rejects it")
        if not can_mount() and any(p in text for text in [step.script or "", *step.args, *(step.command or [])]
                                   for p in ("/tekton/run/", "/tekton/steps/")):
            refuse(problems, pt.task.file, step.line, where, "internal-dirs-without-root")
        folder = step.working_dir
        if folder and folder.startswith("/") and not folder.startswith(("/workspace", "/tekton")) \
                and "$(" not in folder and not Path(folder).is_dir():
            refuse(problems, pt.task.file, step.line, where, "workingdir-outside-workspace", detail=folder)

    def _read_only(self, pt: PipelineTask, workspace: str) -> bool:
        declared = pt.task.workspaces.get(workspace)
        binding = next((b for b in pt.workspaces if b.get("name") == workspace), None)
        return bool((declared and declared.read_only) or (binding and binding.get("readOnly")))

    def _mount_path(self, pt: PipelineTask, workspace: str) -> str:
        declared = pt.task.workspaces.get(workspace)
        return declared.mount_path if declared else f"/workspace/{workspace}"

    # -- scopes ---------------------------------------------------------------------------

    def _result_value(self, pt: PipelineTask, spec: ResultSpec, placeholders: bool) -> Any:
        if placeholders:  # a string placeholder keeps its "$(": an image named by a result is checked later
            return _placeholder(spec.type, spec.properties) if spec.type != "string" else \
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

    # -- binding --------------------------------------------------------------------------

    def _bind_params(self, pt: PipelineTask, scope: Level, expand: Expander, problems: Problems) -> dict[str, Any]:
        task = pt.task
        values: dict[str, Any] = {}
        for name, raw in pt.params.items():
            value = expand(raw, scope, self.pipeline.file, pt.line)
            spec = task.params.get(name)
            if spec is None and not task.inline:
                known = ", ".join(task.params) or "none"
                problems.add(self.pipeline.file, line_of(raw) or pt.line, f"pipeline task {pt.name} passes param "
                             f"{name}, which Task {task.name} does not declare (it declares: {known})")
                continue
            if value is None:  # the problem is recorded; a placeholder keeps the Task's own checks quiet
                if spec is not None:
                    values[name] = _placeholder(spec.type, spec.properties)
                continue
            value = _merged(normalize(value), spec, self.params.get(name) if task.inline else None)
            error = type_error(spec, value) if spec is not None else ""
            if error:
                problems.add(self.pipeline.file, line_of(raw) or pt.line,
                             f"pipeline task {pt.name}: param {name} {error}")
                continue
            values[name] = value
        if task.inline:  # a run's value beats a default: the pipeline's params reach an embedded taskSpec
            for name, value in self.params.items():
                if name not in pt.params:
                    values.setdefault(name, value)
        for spec in task.params.values():
            if spec.name not in values and spec.name not in pt.params:
                if spec.has_default:
                    values[spec.name] = normalize(spec.default)
                    error = type_error(spec, values[spec.name])
                    if error:
                        problems.add(self.pipeline.file, pt.line, f"pipeline task {pt.name} does not set param "
                                     f"{spec.name} of Task {task.name}, and its default {error}")
                else:
                    problems.add(self.pipeline.file, pt.line, f"pipeline task {pt.name} does not set param "
                                 f"{spec.name} of Task {task.name}, which has no default")
        return values

    def _bind_workspaces(self, pt: PipelineTask, scope: Level, expand: Expander, problems: Problems,
                         *, create: bool) -> dict[str, Path | None]:
        bound: dict[str, Path | None] = {}
        for binding in pt.workspaces:
            # without `workspace:`, the pipeline workspace of the same name (Tekton maps by name)
            name = str(binding.get("name") or "")
            source = str(binding.get("workspace") or name)
            if name not in pt.task.workspaces and not pt.task.inline:
                problems.add(self.pipeline.file, line_of(binding), f"pipeline task {pt.name} binds workspace "
                             f"{name}, which Task {pt.task.name} does not declare")
                continue
            if source not in self.pipeline.workspaces:
                problems.add(self.pipeline.file, line_of(binding), f"pipeline task {pt.name} binds pipeline "
                             f"workspace {source!r}, which the pipeline does not declare")
                continue
            folder = self.workspaces.get(source)
            if folder is not None and binding.get("subPath"):
                sub = expand(binding["subPath"], scope, self.pipeline.file, line_of(binding))
                folder = folder / str(sub) if isinstance(sub, str) else None
            if folder is not None and create:
                folder.mkdir(parents=True, exist_ok=True)
            bound[name] = folder
        if pt.task.inline:  # the pipeline's workspaces reach an embedded taskSpec (Tekton's propagation)
            for name, folder in self.workspaces.items():
                if name not in bound and (name in pt.task.workspaces or not pt.workspaces):
                    bound[name] = folder
        for spec in pt.task.workspaces.values():
            if spec.name not in bound and not spec.optional:
                problems.add(self.pipeline.file, pt.line, f"pipeline task {pt.name} does not bind workspace "
                             f"{spec.name}, which Task {pt.task.name} needs")
        return bound

    def _when(self, pt: PipelineTask, expression: Map, scope: Level, expand: Expander) -> bool | None:
        """True or False, or None when a reference failed (recorded by expand)."""
        value = expand(expression.get("input"), scope, self.pipeline.file, line_of(expression))
        values = expand(list(expression.get("values") or []), scope, self.pipeline.file, line_of(expression))
        if value is None or values is None:
            return None
        if not isinstance(value, str) or not all(isinstance(v, str) for v in values):
            expand.problems.add(self.pipeline.file, line_of(expression),
                                f"pipeline task {pt.name}: when input and values must be strings")
            return None
        member = value in values
        return member if str(expression.get("operator")) == "in" else not member

    @staticmethod
    def _step_name(step: Map, index: int) -> str:
        return str(step.get("name") or f"unnamed-{index}")

    def _steps(self, pt: PipelineTask, scope: Level, expand: Expander) -> list[StepSpec]:
        task = pt.task
        template = task.step_template
        specs: list[StepSpec] = []
        for index, raw in enumerate(task.steps):
            name = self._step_name(raw, index)
            merged = Map({**template, **raw})
            env_items = {str(e.get("name")): e for e in list(template.get("env") or []) + list(raw.get("env") or [])
                         if isinstance(e, dict)}
            env = self._env_from_sources(pt, name, list(template.get("envFrom") or []) +
                                         list(raw.get("envFrom") or []), expand.problems)
            for env_name, item in env_items.items():
                if "valueFrom" in item:
                    env[env_name] = self._env_from(pt, name, item, expand.problems)
                    continue
                value = expand(item.get("value", ""), scope, task.file, line_of(item))
                if value is not None and not isinstance(value, str):
                    expand.problems.add(task.file, line_of(item), f"env {env_name} of step {name} must be a string")
                env[env_name] = normalize(value) if value is not None else ""
            image = expand(merged.get("image") or "", scope, task.file, line_of(raw))
            command = expand(list(merged["command"]), scope, task.file, line_of(raw)) if "command" in merged else None
            args = expand(list(merged.get("args") or []), scope, task.file, line_of(raw))
            script = expand(raw.get("script"), scope, task.file, line_of(raw)) if raw.get("script") else None
            working_dir = expand(merged.get("workingDir"), scope, task.file, line_of(raw)) \
                if merged.get("workingDir") else None
            timeout = None
            if merged.get("timeout"):
                try:
                    timeout = parse_duration(str(merged["timeout"]))
                except ValueError as e:
                    expand.problems.add(task.file, line_of(raw), f"step {name}: {e}")
            if not image:
                expand.problems.add(task.file, line_of(raw), f"Task {task.name} step {name} has no image")
            mounts: dict[str, tuple[str, str, bool, str]] = {}
            declared = {str(v.get("name")) for v in task.volumes}
            for mount in list(template.get("volumeMounts") or []) + list(raw.get("volumeMounts") or []):
                if str(mount.get("name")) not in declared:
                    expand.problems.add(task.file, line_of(mount), f"step {name} mounts volume {mount.get('name')}, "
                                        f"which Task {task.name} does not declare")
                    continue
                target = str(expand(mount.get("mountPath") or "", scope, task.file, line_of(mount)) or "")
                sub = str(expand(mount.get("subPath") or "", scope, task.file, line_of(mount)) or "")
                mounts[target] = (str(mount["name"]), target, bool(mount.get("readOnly")), sub)
            specs.append(StepSpec(
                name=name, image=str(image or ""), raw_image=str(merged.get("image") or ""),
                command=[str(c) for c in normalize(command)] if command is not None else None,
                args=[str(a) for a in normalize(args or [])], script=str(script) if script is not None else None,
                env=env, working_dir=str(working_dir) if working_dir else None, timeout=timeout,
                on_error=self._on_error(pt, name, merged.get("onError"), scope, expand), line=line_of(raw),
                mounts=tuple(mounts.values())))
        return specs

    def _on_error(self, pt: PipelineTask, step: str, raw: Any, scope: Level, expand: Expander) -> str:
        """The step's onError, substituted (Tekton substitutes it like any step string) and checked."""
        value = expand(raw, scope, pt.task.file, line_of(raw)) if raw else "stopAndFail"
        if isinstance(value, str) and "$(" not in value and value not in ON_ERROR:
            expand.problems.add(pt.task.file, line_of(raw), f"Task {pt.task.name} step {step}: onError is "
                                f"{value!r}; Tekton accepts {' or '.join(ON_ERROR)}")
        return str(value or "stopAndFail")

    def _env_from_sources(self, pt: PipelineTask, step: str, sources: list[Any], problems: Problems
                          ) -> dict[str, str]:
        """envFrom: every key of a Secret or ConfigMap as a variable (with its prefix); env wins over it."""
        env: dict[str, str] = {}
        for source in sources:
            kind = "Secret" if "secretRef" in source else "ConfigMap" if "configMapRef" in source else ""
            if not kind:
                problems.add(pt.task.file, line_of(source), f"step {step}: envFrom takes secretRef or configMapRef")
                continue
            ref = source["secretRef" if kind == "Secret" else "configMapRef"] or {}
            data = self._data(kind, str(ref.get("name")), bool(ref.get("optional")))
            env.update({f"{source.get('prefix') or ''}{k}": v for k, v in data.items()})
        return env

    def _env_from(self, pt: PipelineTask, step: str, item: Mapping[str, Any], problems: Problems) -> str:
        source = item.get("valueFrom") or {}
        supported = ("secretKeyRef", "configMapKeyRef", "fieldRef")
        if not any(k in source for k in supported) or (
                "fieldRef" in source and source["fieldRef"].get("fieldPath") not in ("metadata.namespace",
                                                                                     "metadata.name")):
            problems.add(pt.task.file, line_of(item), f"step {step}: env {item.get('name')} valueFrom supports "
                         "secretKeyRef, configMapKeyRef and fieldRef metadata.namespace/name here")
            return ""
        if "fieldRef" in source:
            return self.run.namespace if source["fieldRef"]["fieldPath"] == "metadata.namespace" \
                else f"{self.run.name}-{pt.name}-pod"
        secret = "secretKeyRef" in source
        ref = source["secretKeyRef" if secret else "configMapKeyRef"]
        data = self._data("Secret" if secret else "ConfigMap", str(ref.get("name")), bool(ref.get("optional")))
        key = str(ref.get("key"))
        if key not in data and not ref.get("optional") and not self.checking:
            kind = "Secret" if secret else "ConfigMap"
            raise CssrError(f"could not set env {item.get('name')} of step {step}: {kind} {self.run.namespace}/"
                            f"{ref.get('name')} has no key {key}; add it, or mark the ref optional")
        return data.get(key, "")

    def _data(self, kind: str, name: str, optional: bool) -> dict[str, str]:
        """A Secret's (decoded) or ConfigMap's data from the cluster, as the kubelet reads it for a pod."""
        if self.checking:
            return {}
        found = self.read_data(kind, name, self.run.namespace) if self.read_data else None
        if found is None and not optional:
            why = "it does not exist" if self.read_data else "there is no cluster to read it from (--kubeconfig, " \
                  "--simulated)"
            raise CssrError(f"could not read {kind} {self.run.namespace}/{name} for a step: {why}; create it, or "
                            "mark it optional")
        return found or {}

    def plan(self) -> list[str]:
        """How each step would run, for --dry-run: `task/step: image -> how`."""
        lines = []
        for pt in self.order + self.pipeline.finally_tasks:
            ignore = Problems()
            params = self._bind_params(pt, self._pipeline_scope(pt, placeholders=True), Expander(ignore), ignore)
            scope = self._task_scope(pt, params, {}, Path("/tekton/run"), attempt=1,
                                     outer=self._pipeline_scope(pt, placeholders=True))
            for step in self._steps(pt, scope, Expander(ignore)):
                runner = runner_for(step, self.options.image_commands) if "$(" not in step.image else None
                how = runner.kind if isinstance(runner, Runner) else "decided when the task starts"
                lines.append(f"{pt.name}/{step.name}: {step.image} -> {how}")
        return lines

    # -- the run --------------------------------------------------------------------------

    def aggregate_status(self) -> str:
        states = [self.states[t.name] for t in self.pipeline.tasks]
        if any(s.status == "Failed" for s in states):
            return "Failed"
        if any(s.status == "Skipped" for s in states):
            return "Completed"
        return "Succeeded" if all(s.status == "Succeeded" for s in states) else "None"

    def execute(self) -> Outcome:
        temporary = self.options.run_dir is None
        self.run_dir = Path(tempfile.mkdtemp(prefix="cssr-pipeline-")) if temporary else Path(
            self.options.run_dir or ".").resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        names = ", ".join(t.name for t in self.order)
        finals = ", ".join(t.name for t in self.pipeline.finally_tasks) or "none"
        self.log.info(f"PipelineRun {self.run.name} of pipeline {self.pipeline.name} ({self.options.file}) in "
                      f"namespace {self.run.namespace}")
        self.log.info(f"order: {names}; finally: {finals}")
        if self.recorder:
            self.recorder.started(self.run)
        try:
            stopping = False
            for pt in self.order:
                self._task(pt, stopping)
                stopping = stopping or self.states[pt.name].status == "Failed"
            for pt in self.pipeline.finally_tasks:
                self._task(pt, False)
            results = self._pipeline_results()
            statuses = [s.status for s in self.states.values()]
            status = "Failed" if "Failed" in statuses else "Completed" if "Skipped" in statuses else "Succeeded"
            outcome = Outcome(self.run, status, [self.states[t.name] for t in self.order + self.pipeline.finally_tasks],
                              results, time.monotonic() - start, self.run_dir)
            if self.recorder:
                self.recorder.finished(self.run, outcome)
            self._print_table(outcome)
            return outcome
        finally:
            if temporary:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _skip(self, state: TaskState, reason: str, message: str) -> None:
        state.status, state.reason, state.message = "Skipped", reason, message
        self.log.info(f"{state.name}: Skipped ({message})")

    def _task(self, pt: PipelineTask, stopping: bool) -> None:
        state = self.states[pt.name]
        if stopping:
            return self._skip(state, "PipelineRunStopping", "an earlier task failed")
        if not pt.is_finally:
            for parent in dag.dependencies(pt):
                other = self.states.get(parent)
                if other and other.status == "Skipped" and other.reason != "WhenExpressionsSkip":
                    return self._skip(state, "ParentTasksSkip", f"task {parent} was skipped")
        problems = Problems()
        expand = Expander(problems)
        scope = self._pipeline_scope(pt, placeholders=False)
        for expression in pt.when:
            allowed = self._when(pt, expression, scope, expand)
            if expand.missing:
                return self._skip(state, "MissingResultsSkip", "; ".join(expand.missing))
            if allowed is False:
                return self._skip(state, "WhenExpressionsSkip", f"when {expression.get('input')!s} "
                                  f"{expression.get('operator')} {list(expression.get('values') or [])}"
                                  " is false")
        params = self._bind_params(pt, scope, expand, problems)
        if expand.missing:
            producers_ran = all(self.states[p].status == "Succeeded" for p in dag.result_producers(pt))
            if pt.is_finally or not producers_ran:
                return self._skip(state, "MissingResultsSkip", "; ".join(expand.missing))
            return self._fail_early(state, "InvalidTaskResultReference", "; ".join(expand.missing))
        workspaces = self._bind_workspaces(pt, scope, expand, problems, create=True)
        if problems.items:
            return self._fail_early(state, "Failed", "; ".join(problems.items))
        state.params = params
        self._run_attempts(pt, state, params, workspaces)
        return None

    def _fail_early(self, state: TaskState, reason: str, message: str) -> None:
        state.status, state.reason, state.message = "Failed", reason, message
        self.log.info(f"{state.name}: Failed before it started: {message}")

    def _run_attempts(self, pt: PipelineTask, state: TaskState, params: dict[str, Any],
                      workspaces: dict[str, Path | None]) -> None:
        state.started = datetime.now(UTC)
        began = time.monotonic()
        self.log.info(f"{pt.name}: started (Task {pt.task.name})")
        if self.recorder:
            self.recorder.task_started(self.run, state)
        attempts = pt.retries + 1
        for attempt in range(1, attempts + 1):
            state.attempts = attempt
            ok, reason, message = self._attempt(pt, state, params, workspaces, attempt)
            if ok:
                state.status, state.reason, state.message = "Succeeded", "Succeeded", ""
                break
            state.status, state.reason, state.message = "Failed", reason, message
            if attempt < attempts:
                self.log.info(f"{pt.name}: attempt {attempt}/{attempts} failed ({message}); retrying")
        state.finished = datetime.now(UTC)
        state.duration = time.monotonic() - began
        tries = f" after {state.attempts} attempts" if state.attempts > 1 else ""
        detail = f": {state.message}" if state.status == "Failed" else ""
        self.log.info(f"{pt.name}: {state.status}{tries} in {summary.duration(state.duration)}{detail}")
        if self.recorder:
            self.recorder.task_finished(self.run, state)

    def _attempt(self, pt: PipelineTask, state: TaskState, params: dict[str, Any],
                 workspaces: dict[str, Path | None], attempt: int) -> tuple[bool, str, str]:
        folder = self.run_dir / "tasks" / pt.name
        shutil.rmtree(folder / "results", ignore_errors=True)
        for sub in ("results", "home", "work", "steps", "run"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        own = [self._own_folders(folder, raw, index) for index, raw in enumerate(pt.task.steps)]
        for folders in own:
            for made in folders:
                made.mkdir(parents=True, exist_ok=True)
        problems = Problems()
        expand = Expander(problems)
        scope = self._task_scope(pt, params, workspaces, folder, attempt,
                                 outer=self._pipeline_scope(pt, placeholders=False))
        try:
            steps = self._steps(pt, scope, expand)
            volumes = self._volumes(pt, scope, folder / "volumes", expand)
        except CssrError as e:  # a Secret or ConfigMap that could not be read
            return False, "Failed", str(e)
        if problems.items or expand.missing:
            return False, "Failed", "; ".join(problems.items + expand.missing)
        launcher = Launcher(results_dir=folder / "results", home=folder / "home", scripts_dir=folder / "scripts",
                            work_dir=folder / "work", environ=self.options.environ,
                            kubeconfig=self.options.kubeconfig, out=self.out, task_name=pt.name,
                            creatable=(self.run_dir, *(p for p in workspaces.values() if p is not None)))
        deadline = time.monotonic() + pt.timeout if pt.timeout else None
        for step in steps:
            runner = runner_for(step, self.options.image_commands)
            if isinstance(runner, str):
                return False, "Failed", f"step {step.name}: {runner}"
            self.log.info(f"{pt.name}: step {step.name} ({runner.kind}: {_describe(step, runner)})")
            limits = [t for t in (step.timeout, deadline - time.monotonic() if deadline else None) if t is not None]
            if limits and min(limits) <= 0:
                return False, "TaskRunTimeout", f"timed out after {summary.duration(pt.timeout)}"
            mounts, overrides = [], {}
            for volume, target, ro, sub in step.mounts:
                source = volumes[volume] / sub if sub else volumes[volume]
                source.mkdir(parents=True, exist_ok=True)
                if target.startswith(("/tekton/", "/workspace")):  # named in strings; no folder of this machine
                    overrides[target] = str(source)
                else:
                    mounts.append(Mount(source, target, ro))
            # a workspace some step lists (Tekton's isolated workspaces) reaches only the steps that list it
            isolated = {str(u.get("name")) for raw in pt.task.steps for u in raw.get("workspaces") or []}
            listed = {str(u.get("name")) for u in pt.task.steps[steps.index(step)].get("workspaces") or []}
            visible = {w: p for w, p in workspaces.items() if w not in isolated or w in listed}
            for w, path in visible.items():  # bound at its mountPath below, or named by its folder
                if path is not None:
                    target = self._mount_path(pt, w)
                    overrides[target] = target if can_mount() else str(path)
            launcher.tekton_folders(folder / "run", folder / "steps", overrides)
            if mounts and not can_mount():
                self.log.warn(f"{pt.name}: step {step.name} mounts {', '.join(m.target for m in mounts)}; without "
                              "root and unshare it sees this machine's folders there instead")
            # As in a pod, workspaces also appear at their mountPath (/workspace/<name>), for paths written
            # out in params; $(workspaces.<name>.path) names the folder itself and works either way.
            if can_mount():
                mounts += [Mount(path, self._mount_path(pt, w), self._read_only(pt, w))
                           for w, path in visible.items() if path is not None]
                # as in a pod, a step writes only its own /tekton/run/<index> and /tekton/steps entries
                mounts += [Mount(other, str(other), True) for index, folders in enumerate(own)
                           if index != steps.index(step) for other in folders]
            else:
                mounts = []
            try:
                result = launcher.run(step, runner, min(limits) if limits else None, mounts)
            except CssrError as e:
                return False, "Failed", f"step {step.name}: {e}"
            state.steps.append((step.name, result.duration))
            for key in (f"step-{step.name}", str(steps.index(step))):  # Tekton links the index to the name
                exit_file = folder / "steps" / key / "exitCode"
                exit_file.parent.mkdir(parents=True, exist_ok=True)
                exit_file.write_text(str(result.exit_code))
            ignored = result.exit_code != 0 and not result.timed_out and step.on_error == "continue"
            oversized = results.too_large(pt.task, folder / "results", str(result.exit_code) if ignored else None)
            if oversized:
                return False, "Failed", f"step {step.name}: {oversized}"
            if result.exit_code != 0:
                if result.timed_out:
                    hit = "the task's" if deadline and time.monotonic() >= deadline else "its"
                    return False, "TaskRunTimeout", f"step {step.name} was stopped: {hit} timeout ran out"
                if step.on_error == "continue":
                    self.log.info(f"{pt.name}: step {step.name} exited with {result.exit_code}; onError: continue")
                    continue
                why = result.error or f"exited with {result.exit_code}"
                return False, "Failed", f"step {step.name} {why}"
        state.results = self._read_results(pt, folder / "results")
        return True, "Succeeded", ""

    def _own_folders(self, folder: Path, raw: Map, index: int) -> list[Path]:
        """A step's folders under /tekton/run and /tekton/steps, which the other steps see read-only."""
        return [folder / "run" / str(index), folder / "steps" / str(index),
                folder / "steps" / f"step-{self._step_name(raw, index)}"]

    def _volumes(self, pt: PipelineTask, scope: Level, root: Path, expand: Expander) -> dict[str, Path]:
        """A fresh folder per volume of the task: empty, or holding a Secret's or ConfigMap's keys as files."""
        shutil.rmtree(root, ignore_errors=True)
        made: dict[str, Path] = {}
        for volume in pt.task.volumes:
            name = str(volume.get("name"))
            folder = root / name
            folder.mkdir(parents=True)
            source = expand(dict(volume), scope, pt.task.file, line_of(volume))
            for kind, key, ref_key in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
                spec = (source or {}).get(key)
                if not isinstance(spec, dict):
                    continue
                data = self._data(kind, str(spec.get(ref_key)), bool(spec.get("optional")))
                items = {str(i.get("key")): str(i.get("path") or i.get("key")) for i in spec.get("items") or []}
                for data_key, value in data.items():
                    if items and data_key not in items:
                        continue
                    target = folder / items.get(data_key, data_key)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(value, encoding="utf-8")
            made[name] = folder
        return made

    def _read_results(self, pt: PipelineTask, folder: Path) -> dict[str, str]:
        return results.on_disk(pt.task, folder)

    def _pipeline_results(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        scope = self._results_scope(placeholders=False)
        for result in self.pipeline.results:
            expand = Expander(Problems())
            value = expand(result.value, scope, self.pipeline.file, result.line)
            if value is None:
                why = "; ".join(expand.missing + expand.problems.items)
                self.log.info(f"pipeline result {result.name} is not emitted: {why}")
                continue
            values[result.name] = value
        if self.options.results_dir is not None and values:
            self.options.results_dir.mkdir(parents=True, exist_ok=True)
            for name, value in values.items():
                text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
                (self.options.results_dir / name).write_text(text, encoding="utf-8")
        return values

    def _print_table(self, outcome: Outcome) -> None:
        rows = []
        for state in outcome.tasks:
            changed = summary.changes(state.results) if state.status == "Succeeded" else "-"
            note = state.message if state.status != "Succeeded" else (
                f"{state.attempts} attempts" if state.attempts > 1 else "")
            shown = state.name + (" (finally)" if state.is_finally else "")
            rows.append((shown, state.status, summary.duration(state.duration) if state.duration is not None
                         else "-", changed, _short(note)))
        self.out.write("\n" + summary.table(("TASK", "STATUS", "DURATION", "CHANGED", "NOTE"), rows) + "\n\n")
        for name, value in outcome.results.items():
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            self.out.write(f"result {name}: {text}\n")
        self.log.info(f"PipelineRun {self.run.name} {outcome.status} in {summary.duration(outcome.duration)}")
        self.out.flush()


def _merged(value: Any, spec: ParamSpec | None, propagated: Any) -> Any:
    """An object value over what it extends, key by key, as Tekton merges them (getTaskParameters in
    pkg/reconciler/taskrun/resources/apply.go; docs/pipelineruns.md "Object Parameters"): a declared
    param's default, or for an embedded taskSpec that declares none, the run's propagated object."""
    if not isinstance(value, dict):
        return value
    if spec is not None:
        base = normalize(spec.default) if spec.type == "object" and spec.has_default else None
    else:
        base = propagated
    return {**base, **value} if isinstance(base, dict) else value


def _any(_rest: list[Any]) -> bool:
    return True


def _placeholder(kind: str, properties: Sequence[str] = ()) -> Any:
    if kind == "array":
        return AnyList()
    if kind == "object":
        return AnyDict({p: "" for p in properties})
    return ""


def _describe(step: StepSpec, runner: Runner) -> str:
    if step.script is not None:
        first = next((line for line in step.script.splitlines() if line.strip() and not line.startswith("#!")), "")
        what = f"script: {first.strip()[:60]}"
    else:
        what = " ".join((step.command or []) + step.args)[:80]
    if runner.kind == "--image-command":
        return f"{' '.join(runner.local_command)} <- {step.image}; {what}"
    return what


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
