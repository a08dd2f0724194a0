"""What a run is and what it produced: its options, the PipelineRun, each task's state, the outcome."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .model import Map


@dataclass
class Options:
    file: Path
    params: Mapping[str, str] = field(default_factory=dict)
    workspaces: Mapping[str, Path] = field(default_factory=dict)
    tasks_dirs: Sequence[Path] = ()
    image_commands: Mapping[str, str] = field(default_factory=dict)
    kubeconfig: Path | None = None
    namespace: str = "cssr"
    name: str | None = None
    run_dir: Path | None = None
    results_dir: Path | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    # the documents of `file`, when the caller has read (or wrapped) them already: lines still name `file`
    documents: Sequence[Map] | None = None


@dataclass
class RunInfo:
    name: str
    namespace: str
    uid: str
    pipeline: str
    started: datetime


@dataclass
class TaskState:
    name: str
    task: str
    is_finally: bool
    status: str = "Pending"  # Succeeded | Failed | Skipped
    reason: str = ""
    message: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    started: datetime | None = None
    finished: datetime | None = None
    duration: float | None = None
    attempts: int = 0
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def tekton_status(self) -> str:
        """What `$(tasks.<name>.status)` gives: Succeeded, Failed or None."""
        return self.status if self.status in ("Succeeded", "Failed") else "None"


@dataclass
class Outcome:
    run: RunInfo
    status: str  # Succeeded | Completed | Failed
    tasks: list[TaskState]
    results: dict[str, Any]
    duration: float
    run_dir: Path

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "Failed" else 0

    def task(self, name: str) -> TaskState:
        return next(t for t in self.tasks if t.name == name)


# reads a Secret (data decoded) or a ConfigMap: (kind, name, namespace) -> data, None when absent
DataReader = Callable[[str, str, str], dict[str, str] | None]


class Recorder(Protocol):
    """Where the run is mirrored as Tekton objects (the simulated cluster), for the report task."""

    def started(self, run: RunInfo) -> None: ...
    def task_started(self, run: RunInfo, state: TaskState) -> None: ...
    def task_finished(self, run: RunInfo, state: TaskState) -> None: ...
    def finished(self, run: RunInfo, outcome: Outcome) -> None: ...


def run_name(pipeline: str) -> str:
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return f"{pipeline}-run-{suffix}"
