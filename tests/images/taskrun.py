"""Run tasks/cssr-build-init-image.yaml step by step, as a TaskRun pod would, on this machine.

Each step gets the environment the Task declares (stepTemplate.env, then the step's env) with
Tekton's `$(params.x)`, `$(workspaces.x.path)` and `$(results.x.path)` substituted, plus the
overrides a test needs (a private buildah store, HOME). `cssr-tasks` steps run in-process
through `cli.main`; script steps run their script with sh. Like Tekton, the first failing step
ends the run. The tests and the benchmark both use this, so both exercise the Task's own wiring.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cssr_tasks import cli

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "cssr-build-init-image.yaml"
_REF = re.compile(r"\$\(([^()]*)\)")


@dataclass
class StepRun:
    name: str
    code: int
    out: str
    err: str
    seconds: float


@dataclass
class TaskRun:
    steps: list[StepRun] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.code == 0 for s in self.steps)

    def step(self, name: str) -> StepRun:
        return next(s for s in self.steps if s.name == name)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} ({s.code})\n{s.out}{s.err}" for s in self.steps)


def load_task() -> dict[str, Any]:
    return dict(yaml.safe_load(TASK.read_text()))


def run_task(params: dict[str, str], workspaces: dict[str, Path | None], results_dir: Path,
             overrides: dict[str, str] | None = None, task: dict[str, Any] | None = None) -> TaskRun:
    spec = (task or load_task())["spec"]
    values = {f"params.{p['name']}": p.get("default", "") for p in spec.get("params") or []}
    values.update({f"params.{k}": v for k, v in params.items()})
    for w in spec.get("workspaces") or []:
        bound = workspaces.get(w["name"])
        if bound is None and not w.get("optional"):
            raise AssertionError(f"workspace {w['name']} is required")
        values[f"workspaces.{w['name']}.path"] = str(bound) if bound else ""
    for r in spec.get("results") or []:
        values[f"results.{r['name']}.path"] = str(results_dir / r["name"])
    results_dir.mkdir(parents=True, exist_ok=True)

    run = TaskRun()
    template_env = (spec.get("stepTemplate") or {}).get("env") or []
    for step in spec["steps"]:
        env = {e["name"]: _substitute(e.get("value", ""), values) for e in template_env + (step.get("env") or [])}
        env.update(overrides or {})
        started = time.monotonic()
        if step.get("command", [None])[0] == "cssr-tasks":
            code, out, err = python_step(step["command"][1:], env, results_dir)
        else:
            code, out, err = _script_step(step["script"], env, results_dir / f".{step['name']}.sh")
        run.steps.append(StepRun(step["name"], code, out, err, time.monotonic() - started))
        if code != 0:
            break
    run.results = {p.name: p.read_text() for p in results_dir.iterdir() if not p.name.startswith(".")}
    return run


def _substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        if key not in values:
            raise AssertionError(f"$({key}) has no value in this TaskRun")
        return values[key]

    return _REF.sub(one, text)


def python_step(argv: list[str], env: dict[str, str], results_dir: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*argv, "--results-dir", str(results_dir)], env)
    return code, out.getvalue(), err.getvalue()


def _script_step(script: str, env: dict[str, str], path: Path) -> tuple[int, str, str]:
    path.write_text(script)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    done = subprocess.run(["sh", str(path)], env=full_env, capture_output=True, text=True, timeout=900, check=False)
    return done.returncode, done.stdout, done.stderr
