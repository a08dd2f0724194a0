"""Tekton v1 Pipelines and Tasks as the executor needs them: the declarations, loaded and checked.

The YAML with its lines is in documents.py, the table of fields the executor reads in fields.py,
and param values (types, normalization, durations) in values.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .documents import Map, Problems, Text, line_of, load_documents
from .fields import FEATURE_OF, FIELDS, NOT_APPLIED, check_fields
from .unsupported import UNSUPPORTED_TAG, refuse
from .values import normalize, parse_cli_value, parse_duration, type_error

# The names importers have always taken from here, wherever they live now.
__all__ = [
    "FEATURE_OF", "FIELDS", "NOT_APPLIED", "ON_ERROR", "PARAM_TYPES", "Map", "ParamSpec", "Pipeline",
    "PipelineResult", "PipelineTask", "Problems", "ResultSpec", "TaskCatalog", "TaskSpec", "Text",
    "WorkspaceSpec", "check_fields", "line_of", "load_documents", "load_pipeline", "normalize", "parse_cli_value",
    "parse_duration", "task_from", "type_error",
]

PARAM_TYPES = ("string", "array", "object")


# -- declarations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    default: Any
    has_default: bool
    properties: tuple[str, ...]
    line: int
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResultSpec:
    name: str
    type: str
    properties: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str
    optional: bool
    line: int
    mount_path: str = ""  # where a pod mounts it: the declared mountPath, else /workspace/<name>
    read_only: bool = False


@dataclass
class TaskSpec:
    name: str
    file: Path
    line: int
    params: dict[str, ParamSpec]
    results: dict[str, ResultSpec]
    workspaces: dict[str, WorkspaceSpec]
    step_template: Map
    steps: list[Map]
    inline: bool
    volumes: list[Map] = field(default_factory=list)


@dataclass
class PipelineTask:
    name: str
    line: int
    task: TaskSpec
    params: dict[str, Any]
    run_after: list[Text]
    when: list[Map]
    workspaces: list[Map]
    retries: int
    timeout: float | None
    is_finally: bool
    # it uses a feature the executor refuses: the run never starts, and what depends on that feature
    # (its params, steps, results) is not checked further, so that the refusal is the one problem named
    refused: bool = False


@dataclass
class PipelineResult:
    name: str
    value: Any
    line: int


@dataclass
class Pipeline:
    name: str
    file: Path
    params: dict[str, ParamSpec]
    workspaces: dict[str, WorkspaceSpec]
    tasks: list[PipelineTask]
    finally_tasks: list[PipelineTask]
    results: list[PipelineResult]

    @property
    def all_tasks(self) -> list[PipelineTask]:
        return self.tasks + self.finally_tasks

    def task(self, name: str) -> PipelineTask | None:
        return next((t for t in self.all_tasks if t.name == name), None)


# -- loading --------------------------------------------------------------------------------


def _params(raw: Any, file: Path, problems: Problems) -> dict[str, ParamSpec]:
    specs: dict[str, ParamSpec] = {}
    for item in raw or []:
        if not isinstance(item, dict) or not item.get("name"):
            problems.add(file, line_of(item), "a param needs a name")
            continue
        has_default = "default" in item
        default = item.get("default")
        check_fields("param", item, file, f"param {item['name']}", problems)
        declared = item.get("type")
        kind = str(declared) if declared else (  # Tekton infers the type from properties, then the default
            "object" if item.get("properties") or isinstance(default, dict) else
            "array" if isinstance(default, list) else "string")
        if kind not in PARAM_TYPES:
            problems.add(file, line_of(declared), f"param {item['name']} has type {kind!r}; "
                         "use string, array or object")
            kind = "string"
        properties = tuple(str(p) for p in (item.get("properties") or {}))
        enum = tuple(str(v) for v in item.get("enum") or [])
        spec = ParamSpec(str(item["name"]), kind, default, has_default, properties, line_of(item), enum)
        if has_default:  # an object's default may be partial: a value's keys are merged over it
            error = type_error(spec, normalize(default), partial=True)
            if error:
                problems.add(file, line_of(item), f"the default of param {spec.name} {error}")
        specs[spec.name] = spec
    return specs


def _results(raw: Any, file: Path, problems: Problems) -> dict[str, ResultSpec]:
    specs: dict[str, ResultSpec] = {}
    for item in raw or []:
        if not isinstance(item, dict) or not item.get("name"):
            problems.add(file, line_of(item), "a result needs a name")
            continue
        check_fields("result", item, file, f"result {item['name']}", problems)
        kind = str(item.get("type") or "string")
        properties = tuple(str(p) for p in (item.get("properties") or {}))
        specs[str(item["name"])] = ResultSpec(str(item["name"]), kind, properties, line_of(item))
    return specs


def _workspaces(raw: Any, file: Path, problems: Problems) -> dict[str, WorkspaceSpec]:
    specs: dict[str, WorkspaceSpec] = {}
    for item in raw or []:
        if not isinstance(item, dict) or not item.get("name"):
            problems.add(file, line_of(item), "a workspace needs a name")
            continue
        check_fields("workspace", item, file, f"workspace {item['name']}", problems)
        name = str(item["name"])
        specs[name] = WorkspaceSpec(name, bool(item.get("optional")), line_of(item),
                                    str(item.get("mountPath") or f"/workspace/{name}"), bool(item.get("readOnly")))
    return specs


def task_from(doc: Map, file: Path, problems: Problems, *, inline_name: str = "") -> TaskSpec:
    spec = doc if inline_name else (doc.get("spec") or Map())
    name = inline_name or str((doc.get("metadata") or {}).get("name") or "")
    check_fields("taskSpec" if inline_name else "Task", spec, file, f"Task {name}", problems)
    steps = [s for s in spec.get("steps") or [] if isinstance(s, Map)]
    if not steps:
        problems.add(file, line_of(spec), f"Task {name} has no steps")
    check_fields("stepTemplate", spec.get("stepTemplate"), file, f"Task {name} stepTemplate", problems)
    for index, step in enumerate(steps):
        where = f"Task {name} step {step.get('name', index)}"
        check_fields("step", step, file, where, problems)
        if step.get("script") and step.get("command"):
            problems.add(file, line_of(step), f"{where}: a step has either a script or a command, not both")
        on_error = step.get("onError")
        if isinstance(on_error, str) and "$(" not in on_error and on_error not in ON_ERROR:
            problems.add(file, line_of(on_error) or line_of(step), f"{where}: onError is {on_error!r}; Tekton "
                         f"accepts {' or '.join(ON_ERROR)}")
        for used in step.get("workspaces") or []:
            check_fields("stepWorkspace", used, file, f"{where} workspace {used.get('name')}", problems)
            declared = (spec.get("workspaces") or [])
            task_path = next((str(w.get("mountPath") or f"/workspace/{w.get('name')}") for w in declared
                              if isinstance(w, dict) and w.get("name") == used.get("name")), None)
            if used.get("mountPath") and str(used["mountPath"]) != task_path:
                refuse(problems, file, line_of(used), f"{where} workspace {used.get('name')}", "step-workspaces",
                       detail=f"mountPath {used['mountPath']}")
        for mount in step.get("volumeMounts") or []:
            check_fields("volumeMount", mount, file, f"{where} volumeMount {mount.get('name')}", problems)
    for volume in spec.get("volumes") or []:
        check_fields("volume", volume, file, f"Task {name} volume {volume.get('name')}", problems)
    return TaskSpec(
        name=name, file=file, line=line_of(doc),
        params=_params(spec.get("params"), file, problems),
        results=_results(spec.get("results"), file, problems),
        workspaces=_workspaces(spec.get("workspaces"), file, problems),
        step_template=spec.get("stepTemplate") or Map(), steps=steps, inline=bool(inline_name),
        volumes=[v for v in spec.get("volumes") or [] if isinstance(v, Map)],
    )


ON_ERROR = ("continue", "stopAndFail")


class TaskCatalog:
    """Tasks by name: those in the pipeline file first, then `<dir>/<name>.yaml`, then any file of a dir."""

    def __init__(self, documents: Iterable[tuple[Map, Path]], dirs: Iterable[Path]) -> None:
        self.docs = {str((d.get("metadata") or {}).get("name")): (d, p)
                     for d, p in documents if d.get("kind") == "Task"}
        self.dirs = [d for d in dirs if d.is_dir()]
        self.loaded: dict[str, TaskSpec] = {}

    def find(self, name: str) -> tuple[Map, Path] | None:
        if name in self.docs:
            return self.docs[name]
        for directory in self.dirs:
            for candidate in [directory / f"{name}.yaml", directory / f"{name}.yml"]:
                if candidate.is_file():
                    found = self._task_in(candidate, name)
                    if found:
                        return found
        for directory in self.dirs:
            for candidate in sorted(directory.glob("*.y*ml")):
                try:
                    found = self._task_in(candidate, name)
                except ConfigError:
                    continue  # an unrelated broken file must not block this run
                if found:
                    return found
        return None

    @staticmethod
    def _task_in(path: Path, name: str) -> tuple[Map, Path] | None:
        for doc in load_documents(path):
            if doc.get("kind") == "Task" and str((doc.get("metadata") or {}).get("name")) == name:
                return doc, path
        return None

    def task(self, name: str, problems: Problems) -> TaskSpec | None:
        if name not in self.loaded:
            found = self.find(name)
            if found is None:
                return None
            self.loaded[name] = task_from(found[0], found[1], problems)
        return self.loaded[name]


def load_pipeline(path: Path, tasks_dirs: Iterable[Path], problems: Problems,
                  documents: Sequence[Map] | None = None) -> Pipeline:
    """The one Pipeline of `path` (or of `documents`, already read from it), with its Tasks resolved."""
    docs = list(documents) if documents is not None else load_documents(path)
    pipelines = [d for d in docs if d.get("kind") == "Pipeline"]
    if len(pipelines) != 1:
        raise ConfigError(f"could not load {path}: it holds {len(pipelines)} Pipeline documents; "
                          "give a file with exactly one kind: Pipeline (Tasks may sit beside it)")
    doc = pipelines[0]
    if doc.get("apiVersion") != "tekton.dev/v1":
        problems.add(path, line_of(doc), f"apiVersion is {doc.get('apiVersion')!r}; the executor reads "
                     "tekton.dev/v1")
    spec = doc.get("spec") or Map()
    catalog = TaskCatalog(((d, path) for d in docs), tasks_dirs)
    seen: set[str] = set()

    def pipeline_task(raw: Map, is_finally: bool) -> PipelineTask | None:
        name = str(raw.get("name") or "")
        if not name:
            problems.add(path, line_of(raw), "a pipeline task needs a name")
            return None
        if name in seen:
            problems.add(path, line_of(raw), f"pipeline task {name} is declared twice")
        seen.add(name)
        before = len(problems.items)
        check_fields("pipelineTask", raw, path, f"pipeline task {name}", problems)
        if "pipelineRef" in raw or "pipelineSpec" in raw:
            return None  # refused above; it has no Task to check
        task = _resolve_task(raw, name, path, catalog, problems)
        if task is None:
            return None
        refused = any(UNSUPPORTED_TAG in p for p in problems.items[before:])
        if is_finally and raw.get("runAfter"):
            problems.add(path, line_of(raw), f"finally task {name} cannot use runAfter; finally tasks run "
                         "after every task")
        params: dict[str, Any] = {}
        for item in raw.get("params") or []:
            if isinstance(item, dict) and item.get("name"):
                params[str(item["name"])] = item.get("value")
        when = [w for w in raw.get("when") or [] if isinstance(w, Map)]
        for expression in when:
            if "cel" in expression:
                refuse(problems, path, line_of(expression), f"pipeline task {name}", "cel-when")
            elif str(expression.get("operator")) not in ("in", "notin"):
                problems.add(path, line_of(expression), f"pipeline task {name}: when operator "
                             f"{expression.get('operator')!r} must be in or notin")
            elif not isinstance(expression.get("values"), list):
                problems.add(path, line_of(expression), f"pipeline task {name}: when values must be a list")
        timeout = None
        if raw.get("timeout") is not None:
            try:
                timeout = parse_duration(str(raw["timeout"]))
            except ValueError as e:
                problems.add(path, line_of(raw.get("timeout")) or line_of(raw), f"pipeline task {name}: {e}")
        try:
            retries = int(raw.get("retries") or 0)
        except (TypeError, ValueError):
            problems.add(path, line_of(raw), f"pipeline task {name}: retries must be a whole number")
            retries = 0
        return PipelineTask(
            name=name, line=line_of(raw), task=task, params=params,
            run_after=[t for t in raw.get("runAfter") or [] if isinstance(t, Text)],
            when=when, workspaces=[w for w in raw.get("workspaces") or [] if isinstance(w, Map)],
            retries=retries, timeout=timeout, is_finally=is_finally, refused=refused,
        )

    check_fields("Pipeline", spec, path, f"Pipeline {(doc.get('metadata') or {}).get('name')}", problems)
    tasks = [t for raw in spec.get("tasks") or [] if (t := pipeline_task(raw, False))]
    finally_tasks = [t for raw in spec.get("finally") or [] if (t := pipeline_task(raw, True))]
    results = [PipelineResult(str(r["name"]), r.get("value"), line_of(r))
               for r in spec.get("results") or [] if isinstance(r, dict) and r.get("name")]
    if not spec.get("tasks"):
        problems.add(path, line_of(spec), "the pipeline has no tasks")
    return Pipeline(
        name=str((doc.get("metadata") or {}).get("name") or path.stem), file=path,
        params=_params(spec.get("params"), path, problems),
        workspaces=_workspaces(spec.get("workspaces"), path, problems),
        tasks=tasks, finally_tasks=finally_tasks, results=results,
    )


def _resolve_task(raw: Map, name: str, path: Path, catalog: TaskCatalog, problems: Problems) -> TaskSpec | None:
    if isinstance(raw.get("taskSpec"), Map):
        custom = raw["taskSpec"].get("apiVersion") or raw["taskSpec"].get("kind")
        if custom:
            refuse(problems, path, line_of(raw["taskSpec"]), f"pipeline task {name}", "custom-tasks",
                   detail=str(custom))
            return None
        return task_from(raw["taskSpec"], path, problems, inline_name=f"{name} (inline taskSpec)")
    ref = raw.get("taskRef")
    if isinstance(ref, dict) and (ref.get("resolver") or ref.get("bundle")):
        refuse(problems, path, line_of(ref) or line_of(raw), f"pipeline task {name}", "resolvers")
        return None
    if isinstance(ref, dict) and ref.get("kind") not in (None, "Task"):
        refuse(problems, path, line_of(ref), f"pipeline task {name}", "custom-tasks", detail=f"kind {ref.get('kind')}")
        return None
    if not isinstance(ref, dict) or not ref.get("name"):
        problems.add(path, line_of(ref) or line_of(raw), f"pipeline task {name} needs taskRef.name or taskSpec")
        return None
    task = catalog.task(str(ref["name"]), problems)
    if task is None:
        dirs = ", ".join(str(d) for d in catalog.dirs) or "no tasks directory"
        problems.add(path, line_of(ref), f"pipeline task {name}: Task {ref['name']} not found in {path.name} "
                     f"or {dirs}; pass --tasks-dir")
    return task
