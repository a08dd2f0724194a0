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
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..errors import CssrError
from ..log import Log
from . import dag, results, summary
from .binding import Binding
from .model import PipelineTask, Problems, load_pipeline
from .refs import Expander
from .state import DataReader, Options, Outcome, Recorder, RunInfo, TaskState, run_name
from .steps import Launcher, Mount, Runner, StepSpec, can_mount, runner_for
from .stepspecs import StepSpecs
from .unsupported import refuse

__all__ = ["DataReader", "Executor", "Options", "Outcome", "Recorder", "RunInfo", "TaskState", "run_name"]

_RESULT_PATH = re.compile(r"\$\(results\.([^.)]*)\.path\)")


class Executor(Binding, StepSpecs):
    """One PipelineRun: everything checked when it is made (ConfigError naming file and line), run by execute().

    Its parts: scopes.py (what references resolve to), binding.py (params, workspaces, when),
    stepspecs.py (steps, env, volumes); here, the check and the run.
    """

    def __init__(self, options: Options, *, out: TextIO, recorder: Recorder | None = None,
                 read_data: DataReader | None = None) -> None:
        self.options = options
        self.out = out
        self.log = Log("pipeline", out)
        self.recorder = recorder
        self.read_data = read_data
        self.checking = True  # no cluster reads, no folders, while the run is checked
        problems = Problems()
        self.pipeline = load_pipeline(options.file, options.tasks_dirs, problems, options.documents)
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
