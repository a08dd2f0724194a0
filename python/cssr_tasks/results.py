"""Writing Tekton results: one file per result, named like the result, with no trailing newline."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

# Tekton keeps results in the container's termination message (4096 bytes for all steps of
# a pod); we warn well before that so that a growing result is noticed in tests, not on a cluster.
RESULT_WARN_BYTES = 1024


def result_name(field: str) -> str:
    return field.replace("_", "-")


def encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def as_dict(result: Any) -> dict[str, str]:
    """A Result dataclass as {tekton-result-name: encoded value}."""
    return {result_name(f.name): encode(getattr(result, f.name)) for f in dataclasses.fields(result)}


def default_results_dir() -> Path | None:
    tekton = Path("/tekton/results")
    return tekton if tekton.is_dir() else None


def write(results_dir: Path, result: Any) -> dict[str, str]:
    values = as_dict(result)
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        tmp = results_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(value, encoding="utf-8")
        os.replace(tmp, results_dir / name)
    return values
