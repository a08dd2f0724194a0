"""A task's steps as they will run: stepTemplate merged, variables substituted, env from values,
Secrets and ConfigMaps, volumes as folders, and each step's own /tekton/run and /tekton/steps folders."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CssrError
from .model import ON_ERROR, Map, PipelineTask, Problems, line_of, normalize, parse_duration
from .refs import Expander, Level
from .scopes import Scopes
from .steps import StepSpec


class StepSpecs(Scopes):
    """Steps, env and volumes (a part of Executor, run.py)."""

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

    def _own_folders(self, folder: Path, raw: Map, index: int) -> list[Path]:
        """A step's folders under /tekton/run and /tekton/steps, which the other steps see read-only."""
        return [folder / "run" / str(index), folder / "steps" / str(index),
                folder / "steps" / f"step-{self._step_name(raw, index)}"]
