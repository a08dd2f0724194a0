"""Our own reference check across the suite's YAML, for what tekton-lint misses or gets wrong:
every `$(params.x)`, `$(results.x.path)`, `$(workspaces.x.*)` a Task uses is declared; every
`$(tasks.t.results.r)` of a Pipeline names a task and a result its Task declares; params and
workspaces passed to a Task are declared by it and its required ones are given; every
`$(tt.params.x)` of a TriggerTemplate is declared; EventListener refs exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REF = re.compile(r"\$\(([^()]*)\)")
NAME = r"[A-Za-z_][-A-Za-z0-9_.]*?"


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def refs(node: Any) -> Iterator[tuple[str, str]]:
    for path, text in strings(node):
        for match in REF.finditer(text):
            yield path, match.group(1).strip()


class Suite:
    """Every Tekton and Triggers object under the given folders, by kind and name."""

    def __init__(self, paths: list[Path]) -> None:
        self.objects: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind"):
                    self.objects[(doc["kind"], doc["metadata"]["name"])] = (path, doc)
        self.problems: list[Problem] = []

    def problem(self, file: Path, needle: str, message: str) -> None:
        lines = file.read_text().splitlines()
        line = next((i + 1 for i, text in enumerate(lines) if needle in text), 0)
        self.problems.append(Problem(file, line, message))

    def check(self) -> list[Problem]:
        for (kind, name), (path, doc) in sorted(self.objects.items(), key=lambda kv: str(kv[0])):
            if kind == "Task":
                self.check_task(path, name, doc["spec"])
            elif kind == "Pipeline":
                self.check_pipeline(path, name, doc["spec"])
            elif kind == "TriggerTemplate":
                self.check_trigger_template(path, name, doc["spec"])
            elif kind == "EventListener":
                self.check_event_listener(path, name, doc["spec"])
        return self.problems

    # -- Task -----------------------------------------------------------------------------

    def check_task(self, path: Path, name: str, spec: dict[str, Any]) -> None:
        params = {p["name"] for p in spec.get("params") or []}
        results = {r["name"] for r in spec.get("results") or []}
        workspaces = {w["name"] for w in spec.get("workspaces") or []}
        steps = {s.get("name") for s in spec.get("steps") or []}
        for where, ref in refs({k: spec.get(k) for k in ("steps", "stepTemplate", "sidecars", "volumes")}):
            if m := re.fullmatch(rf"params\.({NAME})(\[\*\]|\.[A-Za-z0-9_-]+)?", ref) or re.fullmatch(
                    r"params\['([^']+)'\]", ref):
                if m.group(1) not in params:
                    self.problem(path, f"$({ref})", f"Task {name}: $({ref}) at {where}: param {m.group(1)} is not declared")
                if "script" in where.split(".")[-1]:
                    self.problem(path, f"$({ref})", f"Task {name}: $({ref}) inside a script at {where}; pass params through env")
            elif m := re.fullmatch(rf"results\.({NAME})\.path", ref):
                if m.group(1) not in results:
                    self.problem(path, f"$({ref})", f"Task {name}: $({ref}): result {m.group(1)} is not declared")
            elif m := re.fullmatch(rf"workspaces\.({NAME})\.(path|bound|claim|volume)", ref):
                if m.group(1) not in workspaces:
                    self.problem(path, f"$({ref})", f"Task {name}: $({ref}): workspace {m.group(1)} is not declared")
            elif m := re.fullmatch(rf"steps\.step-({NAME})\.exitCode\.path", ref):
                if m.group(1) not in steps:
                    self.problem(path, f"$({ref})", f"Task {name}: $({ref}): no step {m.group(1)}")
            elif not re.fullmatch(r"context\.(taskRun|task)\.[A-Za-z-]+", ref):
                self.problem(path, f"$({ref})", f"Task {name}: $({ref}) is not a reference this suite knows")

    # -- Pipeline -------------------------------------------------------------------------

    def task_spec(self, pipeline_task: dict[str, Any]) -> dict[str, Any] | None:
        if "taskSpec" in pipeline_task:
            return dict(pipeline_task["taskSpec"])
        ref = (pipeline_task.get("taskRef") or {}).get("name")
        found = self.objects.get(("Task", ref))
        return found[1]["spec"] if found else None

    def check_pipeline(self, path: Path, name: str, spec: dict[str, Any]) -> None:
        params = {p["name"] for p in spec.get("params") or []}
        workspaces = {w["name"] for w in spec.get("workspaces") or []}
        tasks = {t["name"]: t for t in spec.get("tasks") or []}
        finally_tasks = {t["name"]: t for t in spec.get("finally") or []}
        for section, members in (("tasks", tasks), ("finally", finally_tasks)):
            for tname, task in members.items():
                label = f"Pipeline {name} {section} {tname}"
                target = self.task_spec(task)
                if target is None:
                    self.problem(path, f"name: {tname}", f"{label}: Task {(task.get('taskRef') or {}).get('name')} not found")
                    continue
                declared = {p["name"]: p for p in target.get("params") or []}
                given = {p["name"] for p in task.get("params") or []}
                for extra in sorted(given - set(declared)):
                    self.problem(path, f"name: {extra}", f"{label}: passes param {extra}, which its Task does not declare")
                for missing in sorted(p for p, d in declared.items() if "default" not in d and p not in given):
                    self.problem(path, f"name: {tname}", f"{label}: does not pass the required param {missing}")
                bound = {w["name"]: w for w in task.get("workspaces") or []}
                for ws in target.get("workspaces") or []:
                    if ws["name"] not in bound and not ws.get("optional"):
                        self.problem(path, f"name: {tname}", f"{label}: does not bind the workspace {ws['name']}")
                for ws_name, binding in bound.items():
                    if binding.get("workspace") not in workspaces:
                        self.problem(path, f"workspace: {binding.get('workspace')}",
                                     f"{label}: workspace {binding.get('workspace')} is not a Pipeline workspace")
                    if ws_name not in {w["name"] for w in target.get("workspaces") or []}:
                        self.problem(path, f"name: {ws_name}", f"{label}: its Task has no workspace {ws_name}")
                for after in task.get("runAfter") or []:
                    if after not in tasks:
                        self.problem(path, after, f"{label}: runAfter {after}, which is not a task")
                usable = {k: v for k, v in task.items() if k in ("params", "when", "workspaces", "matrix")}
                self.check_pipeline_refs(path, label, usable, params, tasks, in_finally=section == "finally")
        self.check_pipeline_refs(path, f"Pipeline {name} results", spec.get("results") or [], params, tasks,
                                 in_finally=False)

    def check_pipeline_refs(self, path: Path, label: str, node: Any, params: set[str],
                            tasks: dict[str, dict[str, Any]], *, in_finally: bool) -> None:
        for where, ref in refs(node):
            if m := re.fullmatch(rf"params\.({NAME})(\[\*\]|\.[A-Za-z0-9_-]+)?", ref):
                if m.group(1) not in params:
                    self.problem(path, f"$({ref})", f"{label}: $({ref}) at {where}: param {m.group(1)} is not declared")
            elif m := re.fullmatch(rf"tasks\.({NAME})\.results\.({NAME})(\[.*\]|\.[A-Za-z0-9_-]+)?", ref):
                producer = tasks.get(m.group(1))
                spec = self.task_spec(producer) if producer else None
                if producer is None:
                    self.problem(path, f"$({ref})", f"{label}: $({ref}): no task {m.group(1)}")
                elif spec is not None and m.group(2) not in {r["name"] for r in spec.get("results") or []}:
                    self.problem(path, f"$({ref})", f"{label}: $({ref}): task {m.group(1)} has no result {m.group(2)}")
            elif re.fullmatch(rf"tasks\.({NAME})\.(status|reason)", ref) or ref == "tasks.status":
                task = ref.split(".")[1]
                if not in_finally:
                    self.problem(path, f"$({ref})", f"{label}: $({ref}) is only available in finally")
                elif ref != "tasks.status" and task not in tasks:
                    self.problem(path, f"$({ref})", f"{label}: $({ref}): no task {task}")
            elif not re.fullmatch(r"context\.(pipelineRun|pipeline|pipelineTask)\.[A-Za-z-]+", ref) and not \
                    re.fullmatch(rf"workspaces\.({NAME})\.bound", ref):
                self.problem(path, f"$({ref})", f"{label}: $({ref}) is not a reference this suite knows")

    # -- Triggers -------------------------------------------------------------------------

    def check_trigger_template(self, path: Path, name: str, spec: dict[str, Any]) -> None:
        params = {p["name"] for p in spec.get("params") or []}
        used = set()
        for _, ref in refs(spec.get("resourcetemplates") or []):
            if m := re.fullmatch(rf"tt\.params\.({NAME})", ref):
                used.add(m.group(1))
                if m.group(1) not in params:
                    self.problem(path, f"$({ref})", f"TriggerTemplate {name}: $({ref}): param {m.group(1)} is not declared")
        for unused in sorted(params - used):
            self.problem(path, f"name: {unused}", f"TriggerTemplate {name}: param {unused} is declared but never used")
        for template in spec.get("resourcetemplates") or []:
            if template.get("kind") != "PipelineRun":
                continue
            ref = (template["spec"].get("pipelineRef") or {}).get("name")
            found = self.objects.get(("Pipeline", ref))
            if found is None:
                self.problem(path, f"name: {ref}", f"TriggerTemplate {name}: Pipeline {ref} not found")
                continue
            declared = {p["name"] for p in found[1]["spec"].get("params") or []}
            for p in template["spec"].get("params") or []:
                if p["name"] not in declared:
                    self.problem(path, f"name: {p['name']}", f"TriggerTemplate {name}: Pipeline {ref} has no param {p['name']}")

    def check_event_listener(self, path: Path, name: str, spec: dict[str, Any]) -> None:
        for trigger in spec.get("triggers") or []:
            template = (trigger.get("template") or {}).get("ref")
            if template and ("TriggerTemplate", template) not in self.objects:
                self.problem(path, template, f"EventListener {name}: TriggerTemplate {template} not found")
            tt = self.objects.get(("TriggerTemplate", template or ""))
            tt_params = {p["name"] for p in (tt[1]["spec"].get("params") or [])} if tt else set()
            for binding in trigger.get("bindings") or []:
                if "ref" in binding:
                    kind = binding.get("kind", "TriggerBinding")
                    found = self.objects.get((kind, binding["ref"]))
                    if found is None:
                        self.problem(path, binding["ref"], f"EventListener {name}: {kind} {binding['ref']} not found")
                        continue
                    names = [p["name"] for p in found[1]["spec"].get("params") or []]
                else:
                    names = [binding.get("name")]
                for param in names:
                    if tt and param not in tt_params:
                        self.problem(path, str(param), f"EventListener {name}: binding param {param} is not a "
                                                       f"param of TriggerTemplate {template}")


def check(paths: list[Path]) -> list[Problem]:
    return Suite(paths).check()
