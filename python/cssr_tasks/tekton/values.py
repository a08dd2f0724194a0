"""Tekton param values: their type check, Tekton's string normalization, `--param` text and Go durations."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .model import ParamSpec


def type_error(spec: ParamSpec, value: Any, *, partial: bool = False) -> str:
    """Why a value does not fit a param ('' when it does); `partial`: an object may lack declared keys."""
    if spec.type == "string":
        if not isinstance(value, (str, int, float, bool)):
            return f"must be a string, not {_kind(value)}"
        if spec.enum and "$(" not in str(value) and str(value) not in spec.enum:
            return f"is {value!r}, not one of its enum: {', '.join(spec.enum)}"
        return ""
    if spec.type == "array":
        if not isinstance(value, list):
            return f"must be an array, not {_kind(value)}"
        return "" if all(isinstance(v, (str, int, float, bool)) for v in value) else "must be an array of strings"
    if not isinstance(value, dict):
        return f"must be an object, not {_kind(value)}"
    missing = [p for p in spec.properties if p not in value and not partial]
    return f"lacks the key(s) {', '.join(missing)}" if missing else ""


def normalize(value: Any) -> Any:
    """Tekton param values are strings (or lists or maps of strings): YAML's 3 and true become '3', 'true'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalize(v) for k, v in value.items()}
    return "" if value is None else value


def parse_cli_value(spec: ParamSpec, text: str) -> Any:
    """`--param` text as the param's type: JSON, or tkn's forms (`a,b` for arrays, `k:v, k2:v2` for objects)."""
    if spec.type == "string":
        return text
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--param {spec.name}: not valid JSON ({e.msg}); give JSON or the tkn form") from e
    if spec.type == "array":
        return [part.strip() for part in text.split(",")] if stripped else []
    pairs = [p for p in (part.strip() for part in text.split(",")) if p]
    if not all(":" in p for p in pairs):
        raise ConfigError(f"--param {spec.name}: give an object as JSON or as key:value, key2:value2")
    return {k.strip(): v.strip() for k, v in (p.split(":", 1) for p in pairs)}


def _kind(value: Any) -> str:
    return "an array" if isinstance(value, list) else "an object" if isinstance(value, dict) else "a string"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """A Go duration (`1h30m`, `0h1m30s`, `90s`) in seconds; `0` means no timeout (None)."""
    text = text.strip()
    if text in ("0", "0s", ""):
        return None
    if not re.fullmatch(rf"(?:{_DURATION.pattern})+", text):
        raise ValueError(f"timeout {text!r} is not a Go duration such as 1h30m or 90s")
    total = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    return total or None
