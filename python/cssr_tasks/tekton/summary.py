"""The run summary both the executor and the report task print: durations, what changed, a table.

"What changed" is read from results the tasks already emit, so that a task reports a change
by naming it in a result, and both summaries agree:
`built=true`, `built-kernels=[...]`, `pushed=true`, `changed=<true|N|[...]>`,
`statefulset-revision=<rev>`, `recorded=true`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        # Kubernetes timestamps have whole seconds: show them as such, not as false precision
        if float(seconds).is_integer():
            return f"{int(seconds)}s"
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def changes(results: Mapping[str, str]) -> str:
    parts: list[str] = []
    if results.get("built") == "true":
        parts.append("built image")
    kernels = _json(results.get("built-kernels", "[]"))
    if isinstance(kernels, list) and kernels:
        parts.append(f"built modules for {len(kernels)} kernel(s)")
    if results.get("pushed") == "true":
        parts.append("pushed")
    changed = _json(results.get("changed", ""))
    if changed is True or (isinstance(changed, int) and not isinstance(changed, bool) and changed > 0):
        parts.append("changed" if changed is True else f"changed {changed} object(s)")
    elif isinstance(changed, list) and changed:
        parts.append(f"changed {len(changed)} object(s)")
    if results.get("statefulset-revision"):
        parts.append(f"revision {results['statefulset-revision']}")
    if results.get("recorded") == "true":
        parts.append("recorded kernel set")
    return ", ".join(parts) or "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)
