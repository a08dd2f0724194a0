"""Parsing Tekton params, which always arrive as strings in `PARAM_<NAME>` variables.

A task module's `Params.from_env(environ)` reads every value through one `Reader`, which
collects every problem and raises a single `ConfigError` naming all of them, so that a user
fixes a bad PipelineRun in one go rather than one param per run.

The rules every command shares live here, so that a hostile value meets the same answer
everywhere: a value longer than MAX_VALUE_CHARS, a control character inside a string (a
newline smuggling YAML into a rendered manifest), a number that is not plain ASCII digits, NaN,
infinity, negative or beyond the bounds (by default 0 to the int32 maximum that Kubernetes
fields hold), JSON with NaN or nested past any sane depth. Commands narrow the bounds; they
never widen them silently.

One rule per kind of value, so that each param of that kind gets the same answer:
- names (`name`): Kubernetes' DNS-1123 label (63 characters) or subdomain (253), as the API
  server enforces them (k8s.io/apimachinery/pkg/util/validation: DNS1123LabelMaxLength,
  DNS1123SubdomainMaxLength);
- paths (`path`, `tls_verify`): no `..` component, no component that starts with `-` or `~` (a
  path reaches cp, buildah and depmod as an argument), letters, digits, inner spaces and
  `. _ - + @ = , ~` only (no quote, glob or shell character: the steps' scripts get these paths
  too), at most
  NAME_MAX bytes a component and PATH_MAX in all (linux/limits.h), so that no file system call
  fails with ENAMETOOLONG before the param is named;
- image references (`image`): the grammar of distribution/reference (registry_refs.ImageRef)
  in ASCII, its name at most NameTotalLengthMax (255) characters;
- label selectors (`selector`): the kubectl form of selectors.parse, whose keys and values
  follow Kubernetes' label rules; an error names the param.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import selectors
from .errors import ConfigError
from .k8s_names import DNS_SUBDOMAIN, SUBDOMAIN_MAX, name_problem

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}

# Tekton params are small; a longer value is a mistake or an attack, never a configuration.
MAX_VALUE_CHARS = 32768
# The largest value of the int32 fields (replicas, counts, ports) that Kubernetes objects hold.
INT32_MAX = 2**31 - 1
# A week: no wait, interval or timeout of the suite is longer.
MAX_SECONDS = 7 * 24 * 3600.0
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
# A MachineConfigPool name: a DNS subdomain (the lookahead bounds its length for re.fullmatch).
POOL_NAME = rf"(?=.{{1,{SUBDOMAIN_MAX}}}$){DNS_SUBDOMAIN}"
# Linux's NAME_MAX and PATH_MAX (include/uapi/linux/limits.h), in bytes.
NAME_MAX_BYTES, PATH_MAX_BYTES = 255, 4096
# distribution/reference's NameTotalLengthMax: the longest repository name, registry included.
IMAGE_NAME_MAX = 255
_PATH_PUNCTUATION = frozenset("._-+@=,~/ ")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def env_name(param: str) -> str:
    """The variable a Task sets for a param: `node-selector` -> `PARAM_NODE_SELECTOR`."""
    return "PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", param).upper()


def param_name(field: str) -> str:
    """The Tekton param name of a dataclass field: `node_selector` -> `node-selector`."""
    return field.replace("_", "-")


class Reader:
    """Reads typed values from an environment mapping, collecting every error."""

    def __init__(self, environ: Mapping[str, str], *, settings: bool = False) -> None:
        """`settings=True` reads the suite's own variables (CSSR_RETRY_ATTEMPTS) by their names."""
        self.environ = environ
        self.errors: list[str] = []
        self.too_long: set[str] = set()
        self.label = "setting" if settings else "param"
        self.variable: Callable[[str], str] = str if settings else env_name

    def raw(self, name: str) -> str | None:
        """The value as given; None when absent, or when too long to be a value (then an error)."""
        value = self.environ.get(self.variable(name))
        if value is not None and len(value) > MAX_VALUE_CHARS:
            if name not in self.too_long:
                self.too_long.add(name)
                self.errors.append(f"{self.label} {name} is {len(value)} characters long; the limit is "
                                   f"{MAX_VALUE_CHARS}")
            return None
        return value

    def _required(self, name: str, hint: str) -> None:
        if name not in self.too_long:
            self.errors.append(f"{self.label} {name} is required{_hint(hint)}")

    def string(self, name: str, default: str | None = None, *, required: bool = False,
            pattern: str | None = None, hint: str = "") -> str:
        value = self.raw(name)
        if value is None or value == "":
            if required:
                self._required(name, hint)
                return ""
            return default if default is not None else ""
        if _CONTROL.search(value.strip()):
            self.errors.append(f"{self.label} {name}={shown(value)} holds a control character such as a newline; "
                               f"give it on one line{_hint(hint)}")
            return default if default is not None else ""
        if pattern is not None and not re.fullmatch(pattern, value):
            self.errors.append(f"{self.label} {name}={shown(value)} is not valid{_hint(hint)}")
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
        self.errors.append(f"{self.label} {name}={shown(value)} is not a boolean; use true or false")
        return default

    def integer(self, name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
        """A whole number in ASCII digits, from `minimum` (default 0) to `maximum` (default INT32_MAX)."""
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        # int() alone would take "1_000" and Arabic-Indic or full-width digits.
        if not _INTEGER.fullmatch(value.strip()):
            self.errors.append(f"{self.label} {name}={shown(value)} is not a whole number such as {default}")
            return default
        # Past 30 digits only the sign matters, and int() would refuse 4,300 of them.
        text = value.strip()
        number = int(text) if len(text) <= 30 else (-1 if text.startswith("-") else 1) * 10**30
        return number if self._bounded(name, number, minimum, maximum, INT32_MAX) else default

    def number(self, name: str, default: float, *, minimum: float | None = None,
               maximum: float | None = None, unit: str = "a number") -> float:
        """A finite decimal number such as 10 or 0.5, from `minimum` (default 0) to `maximum`
        (default INT32_MAX): never NaN or infinity, which pass every comparison unnoticed."""
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        text = value.strip()
        number = float(text) if _NUMBER.fullmatch(text) and len(text) <= 40 else math.nan
        if not math.isfinite(number):
            self.errors.append(f"{self.label} {name}={shown(value)} is not {unit} such as 30 or 0.5")
            return default
        return number if self._bounded(name, number, minimum, maximum, float(INT32_MAX)) else default

    def seconds(self, name: str, default: float, *, minimum: float | None = None,
                maximum: float | None = None) -> float:
        """A duration in seconds, by default from 0 to MAX_SECONDS (a week)."""
        return self.number(name, default, minimum=minimum, maximum=MAX_SECONDS if maximum is None else maximum,
                           unit="a number of seconds")

    def _bounded(self, name: str, number: float, minimum: float | None, maximum: float | None,
                 ceiling: float) -> bool:
        low = 0 if minimum is None else minimum
        high = ceiling if maximum is None else maximum
        # The value matched a plain number pattern, so it is safe to quote as it is, shortened.
        given = self.environ[self.variable(name)].strip()
        given = given if len(given) <= 30 else f"{given[:12]}...({len(given)} characters)"
        if number < low:
            self.errors.append(f"{self.label} {name}={given} is below the minimum {_plain(low)}")
            return False
        if number > high:
            self.errors.append(f"{self.label} {name}={given} is above the maximum {_plain(high)}")
            return False
        return True

    def json(self, name: str, default: Any, *, kind: type | None = None,
             required: bool = False, hint: str = "") -> Any:
        value = self.raw(name)
        if value is None or value.strip() == "":
            if required:
                self._required(name, hint)
            return default
        try:
            parsed: Any = json.loads(value, parse_constant=_no_constant, parse_float=_finite)
        except json.JSONDecodeError as e:
            self.errors.append(f"{self.label} {name} is not valid JSON ({e.msg} at column {e.colno}){_hint(hint)}")
            return default
        except (ValueError, RecursionError) as e:  # NaN, 1e999, 5000-digit numbers, [[[[...]]]]
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]
            self.errors.append(f"{self.label} {name} is not usable JSON ({reason}){_hint(hint)}")
            return default
        if kind is not None and not isinstance(parsed, kind):
            self.errors.append(f"{self.label} {name} must be a JSON {kind.__name__}, got {type(parsed).__name__}"
                               f"{_hint(hint)}")
            return default
        return parsed

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None or value == "":
            return default
        if value not in choices:
            self.errors.append(f"{self.label} {name}={shown(value)} must be one of {', '.join(choices)}")
            return default
        return value

    def tls_verify(self, name: str = "tls-verify", default: str = "true") -> bool | str:
        """`true`, `false`, or the path of a CA bundle (PEM) that signs the server's certificate."""
        value = self.string(name, default).strip()
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        problem = path_problem(value)
        if problem:
            self.errors.append(f"{self.label} {name}={shown(value)} is neither true, false nor the path of a CA "
                               f"bundle file: it {problem}")
            return True
        try:
            is_file = Path(value).is_file()
        except (OSError, ValueError):  # a file system that refuses the name
            is_file = False
        if not is_file:
            self.errors.append(f"{self.label} {name}={shown(value)} is neither true, false nor the path of an "
                               "existing CA bundle file")
            return True
        return str(Path(value).resolve())  # absolute: the build script reads it from another directory

    def pool(self, name: str = "pool", default: str = "") -> str:
        """A MachineConfigPool name (a DNS subdomain), such as worker or worker-cnf."""
        return self.name(name, default, subdomain=True, hint="a MachineConfigPool name such as worker")

    def name(self, name: str, default: str = "", *, subdomain: bool = False, max_length: int | None = None,
             required: bool = False, hint: str = "") -> str:
        """A Kubernetes object name: a DNS-1123 label (at most 63 characters), or with `subdomain` a
        DNS-1123 subdomain (at most 253); `max_length` narrows that for names that become labels."""
        value = self.string(name, default, required=required, hint=hint)
        problem = name_problem(value, subdomain=subdomain, max_length=max_length) if value else ""
        if problem:
            self.errors.append(f"{self.label} {name}={shown(value)} {problem}{_hint(hint)}")
            return default
        return value

    def path(self, name: str, default: str = "", *, inside: str = "", required: bool = False,
             hint: str = "") -> str:
        """A file or directory path, absolute or relative (with `inside`, the folder it must be relative to,
        relative only), by path_problem's rule; never resolved here: a step reads or creates it only after
        every param is valid."""
        value = self.string(name, default, required=required, hint=hint)
        problem = path_problem(value, inside=inside) if value else ""
        if problem:
            self.errors.append(f"{self.label} {name}={shown(value)} {problem}{_hint(hint)}")
            return default
        return value

    def image(self, name: str, default: str = "", *, bare: bool = False, pinned: bool = False,
              required: bool = False, hint: str = "") -> str:
        """An image reference by image_problem's rule; `bare`: a repository without tag or digest,
        `pinned`: with a digest."""
        value = self.string(name, default, required=required, hint=hint).strip()
        problem = image_problem(value, bare=bare, pinned=pinned) if value else ""
        if problem:
            self.errors.append(f"{self.label} {name}: {problem}{_hint(hint)}")
            return default
        return value

    def selector(self, name: str, default: str = "", *, hint: str = "") -> str:
        """A label selector in kubectl's form (selectors.parse); given, it must hold a requirement: a
        selector of only commas and spaces would select everything, the control plane included."""
        value = self.string(name, default, hint=hint)
        try:
            requirements = selectors.parse(value)
        except ConfigError as e:
            self.errors.append(f"{self.label} {name}: {e}")
            return default
        if value.strip() and not requirements:
            self.errors.append(f"{self.label} {name}={shown(value)} holds no label requirement and would select "
                               "everything; give one such as node-role.kubernetes.io/worker=")
            return default
        return value

    def fail(self, message: str) -> None:
        """Record a problem found by a check that spans several params."""
        self.errors.append(message)

    def done(self) -> None:
        if self.errors:
            raise ConfigError(f"invalid {self.label}s: " + "; ".join(self.errors))


def path_problem(value: str, *, inside: str = "") -> str:
    """What keeps `value` from being a path a param may name, as a phrase; "" when it is one.

    Not every name Linux allows: these paths reach cp, buildah, depmod and the steps' scripts as
    arguments, where `..` leaves the folder a Task meant, a leading `-` reads as an option and a
    leading `~` as a home folder, and quotes, globs, `$` and `;` change what a shell sees. Letters
    and digits of any script pass, and inner spaces: the scripts quote every path."""
    parts = value.split("/")
    if inside and (value.startswith("/") or ".." in parts):
        return f"must be a relative path inside {inside}, without .. components"
    if ".." in parts:
        return "has a .. component; name the path without going up"
    odd = sorted({c for c in value if not (c.isalnum() or c in _PATH_PUNCTUATION)})
    if odd:
        shown_odd = " ".join(repr(c) for c in odd[:8])
        return f"holds {shown_odd}; a path here has letters, digits, spaces and . _ - + @ = , ~ only"
    if value != value.strip():
        return "starts or ends with a space"
    if any(part.startswith(("-", "~")) for part in parts):
        return "has a component that starts with - or ~, which a command or shell would read as an option or home"
    if len(value.encode()) > PATH_MAX_BYTES or any(len(part.encode()) > NAME_MAX_BYTES for part in parts):
        return (f"is longer than Linux allows ({NAME_MAX_BYTES} bytes a component, {PATH_MAX_BYTES} in all)")
    return ""


def image_problem(value: str, *, bare: bool = False, pinned: bool = False) -> str:
    """What keeps `value` from being an image reference (distribution/reference's grammar, in ASCII, its
    name at most NameTotalLengthMax characters), as a sentence; "" when it is one."""
    from .registry_refs import ImageRef  # registry_refs reads its own params through Reader

    if not value.isascii():
        return f"image reference {shown(value)} holds characters outside ASCII, which no reference has"
    try:
        ref = ImageRef.parse(value)
    except ConfigError as e:
        return str(e)
    if len(ref.name) > IMAGE_NAME_MAX:
        return (f"image reference {shown(value)} names a repository of {len(ref.name)} characters; "
                f"distribution/reference allows at most {IMAGE_NAME_MAX}")
    if bare and (ref.tag or ref.digest):
        return f"image reference {shown(value)} must be a repository without tag or digest"
    if pinned and not ref.digest:
        return f"image reference {shown(value)} must be pinned by digest (name@sha256:...)"
    return ""


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""


def shown(value: str, limit: int = 80) -> str:
    """A value as an error message quotes it: on one line, and short."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...' ({len(value)} characters)"


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number
