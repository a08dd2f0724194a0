"""Binding a run's values: the pipeline's params and workspaces from the command line, each pipeline
task's params (defaults, propagation into an embedded taskSpec, objects merged) and workspaces
(by name, subPath, propagation), and `when` expressions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .model import Map, ParamSpec, PipelineTask, Problems, line_of, normalize, parse_cli_value, type_error
from .refs import Expander, Level
from .scopes import Scopes, placeholder


class Binding(Scopes):
    """Params, workspaces and when expressions (a part of Executor, run.py)."""

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
                    values[name] = placeholder(spec.type, spec.properties)
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
