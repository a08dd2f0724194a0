"""Writing Tekton results: one file per result, named like the result, with no trailing newline."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

# Tekton keeps results in the container's termination message (4096 bytes for all steps of
# a pod); we warn well before that so that a growing result is noticed in tests, not on a cluster.
RESULT_WARN_BYTES = 1024


def result_name(field: str) -> str:
    """image_url -> image-url; a field in capitals keeps its name: IMAGE_URL is a Tekton Chains type hint."""
    return field if field.isupper() else field.replace("_", "-")


def encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def as_dict(result: Any) -> dict[str, str]:
    """A Result dataclass as {tekton-result-name: encoded value}; a None field is not a result of this step
    (another step of the Task writes it)."""
    return {result_name(f.name): encode(getattr(result, f.name)) for f in dataclasses.fields(result)
            if getattr(result, f.name) is not None}


def default_results_dir() -> Path | None:
    tekton = Path("/tekton/results")
    return tekton if tekton.is_dir() else None


def check_dir(results_dir: Path) -> None:
    """Refuse, before the step does anything, a results folder that cannot be one or be written."""
    fix = "name a folder this step may write, or leave --results-dir out"
    if results_dir.exists() and not results_dir.is_dir():
        raise ConfigError(f"--results-dir {results_dir} is a file, not a folder; {fix}")
    existing = results_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--results-dir {results_dir}: {existing} is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--results-dir {results_dir}: {existing} is not writable; {fix}")


def write(results_dir: Path, result: Any) -> dict[str, str]:
    values = as_dict(result)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        for name, value in values.items():
            tmp = results_dir / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(value, encoding="utf-8")
            os.replace(tmp, results_dir / name)
    except OSError as e:  # check_dir ran first; this is a folder that changed under the step
        raise ConfigError(f"could not write the results to {results_dir}: {e.strerror}; name a folder this "
                          "step may write") from e
    return values
