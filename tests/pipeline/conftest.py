"""Fixtures for the executor tests: small Pipelines and Tasks written to tmp dirs, run through the real CLI.

Synthetic steps use the image `docker.io/library/bash:5.2`, which the fixture maps to the local
bash with `--image-command`; their scripts write what they saw into a workspace, so that a test
asserts on files, not on log wording.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cssr_tasks import cli

BASH_IMAGE = "docker.io/library/bash:5.2"


@dataclass
class PipelineRun:
    code: int
    out: str
    err: str
    workspace: Path
    results: dict[str, str]

    def lines(self, name: str) -> list[str]:
        """The lines a task wrote to <workspace>/<name>."""
        path = self.workspace / name
        return path.read_text().splitlines() if path.exists() else []

    def row(self, task: str) -> list[str]:
        """The final table's row of a task, split into columns."""
        for line in self.out.splitlines():
            cells = line.split()
            if cells and cells[0] == task:
                return [c for c in cells if c != "(finally)"]
        raise AssertionError(f"no table row for {task} in:\n{self.out}")


def task(name: str, body: str) -> str:
    """A Task document with one bash step; `body` is YAML for spec (params, results, steps...)."""
    return f"apiVersion: tekton.dev/v1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n" + textwrap.indent(
        textwrap.dedent(body).strip("\n"), "  ") + "\n"


def pipeline(body: str, name: str = "test") -> str:
    return f"apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n" + textwrap.indent(
        textwrap.dedent(body).strip("\n"), "  ") + "\n"


# A Task that records its pipeline task name and its `text` param, and emits results.
RECORD = task("record", f"""
    params:
      - name: text
        default: ""
      - name: fail
        default: "false"
    results:
      - name: out
      - name: other
    workspaces:
      - name: ws
    steps:
      - name: record
        image: {BASH_IMAGE}
        env:
          - name: TEXT
            value: $(params.text)
          - name: FAIL
            value: $(params.fail)
          - name: WS
            value: $(workspaces.ws.path)
          - name: ME
            value: $(context.taskRun.name)
        script: |
          echo "${{ME#r-}}" >> "$WS/order"
          printf '%s\\n' "$TEXT" > "$WS/${{ME#r-}}.text"
          printf 'from %s' "${{ME#r-}}" > $(results.out.path)
          [ "$FAIL" != true ] || {{ echo "failing as asked"; exit 3; }}
    """)


@pytest.fixture
def run_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., PipelineRun]:
    """Write the YAML documents to a file and run `cssr-tasks pipeline run` on it with a workspace `ws`."""

    def run(*documents: str, args: tuple[str, ...] = (), workspace: bool = True,
            image_command: bool = True, env: dict[str, str] | None = None) -> PipelineRun:
        folder = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
        folder.mkdir()
        path = folder / "pipeline.yaml"
        path.write_text("---\n".join(documents))
        ws = folder / "ws"
        argv = ["pipeline", "run", str(path), "--tasks-dir", str(folder), "--results-dir", str(folder / "results"),
                "--name", "r"]
        if workspace:
            argv += ["--workspace", f"ws={ws}"]
        if image_command:
            argv += ["--image-command", "docker.io/library/bash=bash"]
        code = cli.main(argv + list(args), {"PATH": "/usr/bin:/bin", **(env or {})})
        captured = capsys.readouterr()
        results_dir = folder / "results"
        results = {p.name: p.read_text() for p in results_dir.iterdir()} if results_dir.is_dir() else {}
        return PipelineRun(code, captured.out, captured.err, ws, results)

    return run
