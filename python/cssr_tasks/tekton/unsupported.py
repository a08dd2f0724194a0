"""The Tekton features the local executor refuses, rather than run something other than Tekton would.

Each has an id that docs/pipeline-run-locally.md lists under "Unsupported features"; every
refusal names its id as `[unsupported: <id>]`, so that a reader (and the conformance test over
Tekton's examples) can tell "the executor lacks this" from "the YAML is wrong".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Problems

FEATURES: dict[str, str] = {
    "matrix": "matrix (fanning a pipeline task out over param combinations)",
    "pipelines-in-pipelines": "pipelineRef or pipelineSpec on a pipeline task",
    "resolvers": "remote resolution: taskRef/pipelineRef with a resolver or a bundle",
    "custom-tasks": "taskRef of a kind other than Task (custom tasks)",
    "pipeline-task-on-error": "onError on a pipeline task",
    "cel-when": "CEL when expressions",
    "step-actions": "StepActions (a step with ref)",
    "sidecars": "sidecars",
    "volume-kind": "volumes other than emptyDir, secret and configMap",
    "step-workspaces": "a step-level workspace's mountPath other than the Task's (isolated workspaces are mounted "
                       "at the Task's)",
    "step-when": "when on a step",
    "step-results": "step results",
    "step-output-streams": "stdoutConfig and stderrConfig on a step",
    "artifacts": "Tekton artifacts ($(artifacts...), $(step.artifacts.path))",
    "readonly-workspace-without-root": "readOnly workspaces, when the executor cannot mount (not root, or no unshare)",
    "internal-dirs-without-root": "a step naming /tekton/run/ or /tekton/steps/ folders (Tekton mounts other steps' "
                                  "read-only), when the executor cannot mount (not root, or no unshare)",
    "pod-settings": "securityContext.runAsUser or runAsGroup other than the executor's own (the identity "
                    "a step runs as)",
    "unknown-field": "a field the executor does not know (of a newer Tekton, or misspelled)",
    "workingdir-outside-workspace": "a workingDir that does not exist here, outside /workspace (a container "
                                    "runtime creates it; the executor creates no folders on this machine)",
}

UNSUPPORTED_TAG = "[unsupported: "
_TAG = re.compile(r"\[unsupported: ([a-z0-9-]+)\]")


def refuse(problems: Problems, file: Path | str, line: int, where: str, feature: str, *,
           detail: str = "") -> None:
    """Record that `where` uses `feature`, which the executor does not implement."""
    assert feature in FEATURES, feature
    extra = f" ({detail})" if detail else ""
    problems.add(file, line, f"{where}: {FEATURES[feature]}{extra} is not supported by the local executor "
                 f"[unsupported: {feature}]")


def named_features(text: str) -> list[str]:
    """The feature ids a refusal names."""
    return sorted(set(_TAG.findall(text)))
