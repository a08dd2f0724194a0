"""The package's boundaries, as the house style sets them: one door to the cluster, one door per
HTTP service, and task modules that never import each other (each is one Task's command)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cssr_tasks.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "cssr_tasks"
# The commands that are not a Task's step: the local executor, the simulator and the watcher.
NOT_TASKS = {"pipeline", "sim", "watch-pools"}
TASK_MODULES = {m for c, m in COMMANDS.items() if c not in NOT_TASKS}


def imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports."""
    package = "cssr_tasks" + "".join(f".{p}" for p in path.relative_to(PACKAGE).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def name_of(path: Path) -> str:
    return "cssr_tasks." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


@pytest.mark.parametrize("path", [m for m in modules() if name_of(m) in TASK_MODULES], ids=name_of)
def test_task_modules_do_not_import_each_other(path):
    others = TASK_MODULES - {name_of(path)}
    assert not imports(path) & others


@pytest.mark.parametrize(("library", "allowed"), [
    ("kubernetes", {"cssr_tasks.cluster"}),
    ("requests", {"cssr_tasks.registry", "cssr_tasks.ssr_api", "cssr_tasks.watch_pools"}),
], ids=["kubernetes-only-in-cluster", "requests-only-in-its-clients"])
def test_one_door_per_library(library, allowed):
    users = {name_of(p) for p in modules()
             if any(i == library or i.startswith(library + ".") for i in imports(p))}
    assert users <= allowed


def test_the_tasks_image_needs_no_simulator():
    task_side = [p for p in modules() if ".sim" not in name_of(p) and name_of(p) not in {"cssr_tasks.pipeline"}
                 and not name_of(p).startswith("cssr_tasks.tekton")]
    offenders = {name_of(p) for p in task_side
                 if any(i.startswith("cssr_tasks.sim") or i.startswith("kmock") for i in imports(p))}
    # cli's --simulated imports the simulator lazily, inside the function that needs it
    assert offenders <= {"cssr_tasks.cli"}
