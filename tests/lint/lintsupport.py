"""What the lint gates share: the suite's YAML files and a scratch copy of them to break."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def suite_files() -> list[Path]:
    return sorted(p for folder in ("tasks", "pipelines", "triggers") for p in (REPO / folder).glob("*.yaml")
                  if p.name != "kustomization.yaml")


def task_files() -> list[Path]:
    return sorted((REPO / "tasks").glob("*.yaml"))


@pytest.fixture
def broken_copy(tmp_path: Path):
    """A copy of the suite in tmp_path with one Task file rewritten by `edit`."""

    def make(edit, task: str = "cssr-detect-kernel.yaml") -> list[Path]:
        copies = []
        for path in suite_files():
            target = tmp_path / path.parent.name / path.name
            target.parent.mkdir(exist_ok=True)
            text = path.read_text()
            target.write_text(edit(text) if path.name == task else text)
            copies.append(target)
        return copies

    return make
