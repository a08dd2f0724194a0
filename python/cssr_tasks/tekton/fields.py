"""The table of every Task and Pipeline field the executor reads, and the refusal of any other field
with the feature it belongs to (unsupported.py), so that no field is read and then ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .documents import Problems, line_of
from .unsupported import refuse

# Every field the executor reads, per object. A field outside these tables is refused with the
# feature it belongs to (unsupported.py), so that no field is read and then ignored. NOT_APPLIED
# fields constrain the container, not what its commands do; the docs list them as accepted, not applied.
NOT_APPLIED = {"computeResources", "imagePullPolicy", "securityContext", "description", "displayName"}
_CONTAINER = {"name", "image", "command", "args", "script", "env", "envFrom", "workingDir", "volumeMounts",
              "timeout", "onError", "workspaces"} | NOT_APPLIED
FIELDS = {
    "Task": {"params", "results", "workspaces", "volumes", "stepTemplate", "steps"} | NOT_APPLIED,
    "step": _CONTAINER,
    "stepTemplate": _CONTAINER - {"name", "script", "timeout", "onError", "workspaces"},
    "stepWorkspace": {"name", "mountPath"},  # a mountPath other than the Task's is refused in task_from
    "param": {"name", "type", "default", "properties", "enum", "description"},
    "result": {"name", "type", "properties", "description"},
    "workspace": {"name", "mountPath", "readOnly", "optional", "description"},
    "volume": {"name", "emptyDir", "secret", "configMap"},
    "volumeMount": {"name", "mountPath", "readOnly", "subPath"},
    "Pipeline": {"params", "workspaces", "tasks", "finally", "results", "description", "displayName"},
    "pipelineTask": {"name", "taskRef", "taskSpec", "params", "workspaces", "runAfter", "when", "retries",
                     "timeout", "description", "displayName"},
    "taskSpec": {"metadata"},  # an embedded taskSpec also carries labels and annotations for its TaskRun
}
# fields that belong to a feature the executor refuses
FEATURE_OF = {
    ("pipelineTask", "matrix"): "matrix", ("pipelineTask", "pipelineRef"): "pipelines-in-pipelines",
    ("pipelineTask", "pipelineSpec"): "pipelines-in-pipelines", ("pipelineTask", "onError"): "pipeline-task-on-error",
    ("Task", "sidecars"): "sidecars", ("step", "ref"): "step-actions", ("step", "params"): "step-actions",
    ("step", "when"): "step-when", ("step", "results"): "step-results",
    ("step", "stdoutConfig"): "step-output-streams", ("step", "stderrConfig"): "step-output-streams",
    ("result", "value"): "step-results", ("volume", "*"): "volume-kind",
}
_RUN_AS = ("runAsUser", "runAsGroup")


def check_fields(kind: str, obj: Any, file: Path, where: str, problems: Problems) -> None:
    """Refuse every field of obj outside FIELDS[kind], naming the feature it belongs to."""
    if not isinstance(obj, dict):
        return
    allowed = FIELDS[kind] | (FIELDS["Task"] | FIELDS["taskSpec"] if kind == "taskSpec" else set())
    for key, value in obj.items():
        line = line_of(value) or line_of(obj)
        if key not in allowed:
            kinds = (kind, "Task") if kind == "taskSpec" else (kind,)  # an embedded taskSpec is a Task's spec
            feature = next((f for k in kinds for f in (FEATURE_OF.get((k, key)), FEATURE_OF.get((k, "*"))) if f),
                           "unknown-field")
            if key == "pipelineRef" and isinstance(value, dict) and (value.get("resolver") or value.get("bundle")):
                feature = "resolvers"  # a Pipeline fetched from elsewhere: fetching it is the first thing missing
            refuse(problems, file, line, where, feature, detail=f"field {key}")
        elif key == "securityContext" and isinstance(value, dict):
            own = {"runAsUser": os.geteuid(), "runAsGroup": os.getegid()}
            for name in _RUN_AS:  # the identity a step runs as changes what it can read and write:
                if name in value and str(value[name]) != str(own[name]):  # only the executor's own passes
                    refuse(problems, file, line, where, "pod-settings", detail=f"securityContext.{name}")
