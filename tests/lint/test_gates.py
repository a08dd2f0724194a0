"""The lint gates of `make test`: each passes on the suite and fails on a deliberately broken Task.

yamllint, @ibm/tekton-lint, schema validation against the pinned CRDs (.cache/crds) and Kubernetes schemas,
our own cross-reference check, and ruff and mypy on the Python of a Task.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crossref import check
from lintsupport import REPO, suite_files
from schemas import validate_object
from support import require_tool

TEKTON_LINT = REPO / "tools/lint/node_modules/.bin/tekton-lint"
BIN = Path(sys.executable).parent


def yamllint(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "yamllint"), "-s", "-c", str(REPO / ".yamllint"), *map(str, paths)],
                          capture_output=True, text=True, check=False)


def tekton_lint(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    require_tool(str(TEKTON_LINT))
    return subprocess.run([str(TEKTON_LINT), "--config", str(REPO), *map(str, paths)],
                          capture_output=True, text=True, check=False, cwd=REPO)


def schema_problems(paths: list[Path]) -> list[str]:
    return [p for path in paths for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)
            for p in validate_object(doc)]


def test_suite_has_yaml():
    assert any(p.parent.name == "tasks" for p in suite_files())


def test_yamllint_passes_on_the_suite():
    run = yamllint(suite_files() + [REPO / ".tektonlintrc.yaml"])
    assert run.returncode == 0, run.stdout


def test_yamllint_fails_on_a_broken_task(broken_copy):
    run = yamllint(broken_copy(lambda text: text.replace("  params:\n", "  params: [\n", 1)))
    assert run.returncode != 0
    assert "cssr-detect-kernel.yaml" in run.stdout


def test_tekton_lint_passes_on_the_suite():
    run = tekton_lint(suite_files())
    assert run.returncode == 0, run.stdout + run.stderr


def test_tekton_lint_fails_on_a_broken_task(broken_copy):
    paths = broken_copy(lambda text: text.replace("value: $(params.pool)", "value: $(params.pol)"))
    run = tekton_lint(paths)
    assert run.returncode != 0
    assert "pol" in run.stdout + run.stderr


def test_every_object_validates_against_its_schema():
    assert schema_problems(suite_files()) == []


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.replace('command: ["cssr-tasks", "detect-kernel"]', 'comand: ["cssr-tasks", "detect-kernel"]'),
     "'comand' was unexpected"),
    (lambda t: t.replace("memory: 128Mi", "memory: [128Mi]"), "computeResources"),
    (lambda t: t.replace("kind: Task", "kind: Tsak"), "no schema for tekton.dev/v1 Tsak"),
], ids=["unknown-field", "wrong-type", "unknown-kind"])
def test_schema_gate_fails_on_a_broken_task(broken_copy, edit, expected):
    problems = schema_problems(broken_copy(edit))
    assert any(expected in p for p in problems), problems


def test_cross_references_resolve():
    assert [str(p) for p in check(suite_files())] == []


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.replace("value: $(params.pool)", "value: $(params.pol)"), "param pol is not declared"),
    (lambda t: t.replace('command: ["cssr-tasks", "detect-kernel"]',
                         'script: |\n        echo $(params.pool) > $(results.kernel-set-ids.path)'),
     "result kernel-set-ids is not declared"),
    (lambda t: t.replace('command: ["cssr-tasks", "detect-kernel"]', 'script: |\n        echo $(params.pool)'),
     "inside a script"),
    (lambda t: t.replace('command: ["cssr-tasks", "detect-kernel"]',
                         'script: |\n        ls $(workspaces.source.path)'), "workspace source is not declared"),
], ids=["undeclared-param", "undeclared-result", "param-in-script", "undeclared-workspace"])
def test_cross_reference_gate_fails_on_a_broken_task(broken_copy, edit, expected):
    problems = [str(p) for p in check(broken_copy(edit))]
    assert any(expected in p for p in problems), problems
    assert all(":" in p.split("cssr-detect-kernel.yaml", 1)[-1] for p in problems)


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_python_gate_passes_on_the_repository(tool):
    args = {"ruff": [str(BIN / "ruff"), "check", "--no-cache", "python", "tests", "bench", "e2e"],
            "mypy": [str(BIN / "mypy")]}[tool]
    run = subprocess.run(args, capture_output=True, text=True, check=False, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(("tool", "edit", "expected"), [
    ("ruff", lambda s: "import os\n" + s, "F401"),
    ("mypy", lambda s: s.replace("node_count=len(nodes),", 'node_count="many",'), "incompatible type"),
], ids=["ruff-unused-import", "mypy-wrong-type"])
def test_python_gate_fails_on_a_broken_task_module(tmp_path, tool, edit, expected):
    package = tmp_path / "python" / "cssr_tasks"
    shutil.copytree(REPO / "python" / "cssr_tasks", package, ignore=shutil.ignore_patterns("__pycache__"))
    module = package / "detect_kernel.py"
    module.write_text(edit(module.read_text()))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    run = subprocess.run(
        {"ruff": [str(BIN / "ruff"), "check", "--no-cache", str(module)],
         "mypy": [str(BIN / "mypy"), "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"), str(package)]}[tool],
        capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode != 0
    assert expected in run.stdout
