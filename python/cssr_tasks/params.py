"""Parsing Tekton params, which always arrive as strings in `PARAM_<NAME>` variables.

A task module's `Params.from_env(environ)` reads every value through one `Reader`, which
collects every problem and raises a single `ConfigError` naming all of them, so that a user
fixes a bad PipelineRun in one go rather than one param per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


def env_name(param: str) -> str:
    """The variable a Task sets for a param: `node-selector` -> `PARAM_NODE_SELECTOR`."""
    return "PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", param).upper()


def param_name(field: str) -> str:
    """The Tekton param name of a dataclass field: `node_selector` -> `node-selector`."""
    return field.replace("_", "-")


class Reader:
    """Reads typed values from an environment mapping, collecting every error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.errors: list[str] = []

    def raw(self, name: str) -> str | None:
        return self.environ.get(env_name(name))

    def string(self, name: str, default: str | None = None, *, required: bool = False,
            pattern: str | None = None, hint: str = "") -> str:
        value = self.raw(name)
        if value is None or value == "":
            if required:
                self.errors.append(f"param {name} is required{_hint(hint)}")
                return ""
            return default if default is not None else ""
        if pattern is not None and not re.fullmatch(pattern, value):
            self.errors.append(f"param {name}={value!r} is not valid{_hint(hint)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False if lowered else default
        self.errors.append(f"param {name}={value!r} is not a boolean; use true or false")
        return default

    def integer(self, name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = int(value.strip())
        except ValueError:
            self.errors.append(f"param {name}={value!r} is not a whole number")
            return default
        if minimum is not None and number < minimum:
            self.errors.append(f"param {name}={number} is below the minimum {minimum}")
        if maximum is not None and number > maximum:
            self.errors.append(f"param {name}={number} is above the maximum {maximum}")
        return number

    def json(self, name: str, default: Any, *, kind: type | None = None,
             required: bool = False, hint: str = "") -> Any:
        value = self.raw(name)
        if value is None or value.strip() == "":
            if required:
                self.errors.append(f"param {name} is required{_hint(hint)}")
            return default
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError as e:
            self.errors.append(f"param {name} is not valid JSON ({e.msg} at column {e.colno}){_hint(hint)}")
            return default
        if kind is not None and not isinstance(parsed, kind):
            self.errors.append(f"param {name} must be a JSON {kind.__name__}, got {type(parsed).__name__}{_hint(hint)}")
            return default
        return parsed

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None or value == "":
            return default
        if value not in choices:
            self.errors.append(f"param {name}={value!r} must be one of {', '.join(choices)}")
            return default
        return value

    def tls_verify(self, name: str = "tls-verify", default: str = "true") -> bool | str:
        """`true`, `false`, or the path of a CA bundle (PEM) that signs the server's certificate."""
        value = self.string(name, default).strip()
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        if not Path(value).is_file():
            self.errors.append(f"param {name}={value!r} is neither true, false nor the path of an existing CA "
                               "bundle file")
            return True
        return value

    def pool(self, name: str = "pool", default: str = "") -> str:
        """A MachineConfigPool name (a DNS subdomain), such as worker or worker-cnf."""
        return self.string(name, default, pattern=r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?",
                           hint="a MachineConfigPool name such as worker")

    def fail(self, message: str) -> None:
        """Record a problem found by a check that spans several params."""
        self.errors.append(message)

    def done(self) -> None:
        if self.errors:
            raise ConfigError("invalid params: " + "; ".join(self.errors))


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""
