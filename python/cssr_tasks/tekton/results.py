"""Task results as Tekton carries them: in each step container's termination message.

After each step, Tekton's entrypoint writes every task result found in /tekton/results (all
steps share the folder), plus its own StartedAt entry (and ExitCode after an ignored failure),
as a JSON list to the container's termination message (pkg/entrypoint/entrypointer.go,
pkg/termination/write.go). The message may hold 4096 bytes, or the step fails with "Termination
message is above max allowed size 4096". The kubelet also cuts every container's message to
12 KiB divided by the pod's containers, init containers included
(kubernetes pkg/kubelet/status/status_manager.go normalizeStatus), and a cut message no longer
parses: so the room for results shrinks with the number of steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from .model import TaskSpec

CONTAINER_LIMIT = 4096  # pkg/termination/write.go MaxContainerTerminationMessageLength
POD_LIMIT = 12 * 1024  # kubelet MaxPodTerminationMessageLogLength, shared by all containers of the pod
STARTED_AT = "2006-01-02T15:04:05.000Z"  # the entrypoint's timeFormat, in UTC: every message has one
INTERNAL, TASK_RESULT = 3, 1  # pkg/result/result.go: InternalTektonResultType, TaskRunResultType


def containers(task: TaskSpec) -> int:
    """The containers of the task's pod: its steps, the `prepare` init container, `place-scripts` when a
    step has a script, `working-dir-initializer` when a workingDir is relative or under /workspace/."""
    scripts = any(step.get("script") for step in task.steps)
    dirs = [str(step.get("workingDir") or task.step_template.get("workingDir") or "") for step in task.steps]
    init_dirs = any(d and (not d.startswith("/") or d.startswith("/workspace/")) for d in dirs)
    return len(task.steps) + 1 + int(scripts) + int(init_dirs)


def limit(task: TaskSpec) -> int:
    return min(CONTAINER_LIMIT, POD_LIMIT // containers(task))


def go_json(value: object) -> str:
    """json.Marshal's output: compact, UTF-8, with <, >, & and U+2028/9 escaped as Go does."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def message(results: Mapping[str, str], exit_code: str | None = None) -> bytes:
    """The termination message a step writes, with these results on disk when it ends."""
    entries: list[dict[str, object]] = [{"key": "StartedAt", "value": STARTED_AT, "type": INTERNAL}]
    if exit_code is not None:
        entries.append({"key": "ExitCode", "value": exit_code, "type": INTERNAL})
    entries += [{"key": k, "value": v, "type": TASK_RESULT} for k, v in results.items()]
    return go_json(entries).encode()


def on_disk(task: TaskSpec, folder: Path) -> dict[str, str]:
    """The declared results whose files exist, as the entrypoint reads them."""
    return {name: (folder / name).read_bytes().decode("utf-8", "replace")
            for name in task.results if (folder / name).is_file()}


def too_large(task: TaskSpec, folder: Path, exit_code: str | None = None) -> str:
    """Why the step that just ended would fail on a cluster for its results ('' when it would not)."""
    size, room, count = len(message(on_disk(task, folder), exit_code)), limit(task), containers(task)
    if size <= room:
        return ""
    return (f"its termination message (the results as JSON) is {size} bytes, above the {room} a step of this "
            f"Task may write (4096 per container, 12288 per pod shared by its {count} containers); Tekton "
            "fails the TaskRun; move bulk data to a workspace")
