"""Label selectors: parsing the string form and matching labels against it.

The string form is what users type in params; the structured form is what a
MachineConfigPool's `spec.nodeSelector` holds. The simulated cluster matches with the same
code, so both sides of every list agree on what a selector means.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .k8s_names import label_key_problem, label_value_problem

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # =, !=, in, notin, exists, !
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "=="):
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present  # "!"

    def __str__(self) -> str:
        if self.operator in ("=", "==", "!="):
            return f"{self.key}{self.operator}{self.values[0]}"
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        return self.key if self.operator == "exists" else f"!{self.key}"


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse(text: str) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (f,g),!h,i` into requirements; raise ConfigError on bad syntax."""
    requirements = []
    for part in _split(text or ""):
        set_match = re.fullmatch(rf"(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)", part)
        eq_match = re.fullmatch(rf"(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})", part)
        if set_match:
            values = tuple(v.strip() for v in set_match["values"].split(",") if v.strip())
            requirements.append(Requirement(set_match["key"], set_match["op"], values))
        elif eq_match:
            requirements.append(Requirement(eq_match["key"], eq_match["op"], (eq_match["value"],)))
        elif re.fullmatch(rf"!\s*{_KEY}", part):
            requirements.append(Requirement(part[1:].strip(), "!"))
        elif re.fullmatch(_KEY, part):
            requirements.append(Requirement(part, "exists"))
        else:
            raise ConfigError(f"label selector {_short(text)} is not valid near {_short(part)}; "
                              "use the kubectl form, e.g. node-role.kubernetes.io/worker=")
    problem = next((p for p in map(_problem, requirements) if p), "")
    if problem:
        raise ConfigError(f"label selector {_short(text)} is not valid: {problem}")
    return requirements


def _problem(requirement: Requirement) -> str:
    """Kubernetes' label rules, which the syntax above leaves open (lengths, a key's prefix)."""
    key_problem = label_key_problem(requirement.key)
    if key_problem:
        return f"its key {_short(requirement.key, 40)} {key_problem}"
    return next((f"its value {_short(v, 40)} {label_value_problem(v)}" for v in requirement.values
                 if label_value_problem(v)), "")


def _short(text: str, limit: int = 80) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= limit else f"{quoted[:limit]}...' ({len(text)} characters)"


def matches(selector: str, labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in parse(selector))


def from_label_selector(selector: Mapping[str, Any] | None) -> str:
    """A structured LabelSelector (matchLabels/matchExpressions) in its string form."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ConfigError(f"label selector operator {op!r} is not supported")
    return ",".join(parts)


def primary_pool(labels: Mapping[str, str] | None, pools: Sequence[Mapping[str, Any]]) -> str | None:
    """The MachineConfigPool a node belongs to, by the Machine Config Operator's own rule
    (machine-config-operator pkg/controller/node/node_controller.go, getPoolsForNode): of the pools whose
    nodeSelector matches, an empty selector matching nothing, one custom pool wins, then `master` (a compact
    cluster's nodes carry both roles and live in master), then `worker`; None when no pool or two custom
    pools match (the MCO then manages the node in none)."""
    matching = []
    for pool in pools:
        selector = from_label_selector((pool.get("spec") or {}).get("nodeSelector"))
        if selector and matches(selector, labels):
            matching.append(str((pool.get("metadata") or {}).get("name")))
    custom = [name for name in matching if name not in ("master", "worker")]
    if len(custom) > 1 or (custom and "master" in matching):
        return None
    if custom:
        return custom[0]
    return "master" if "master" in matching else ("worker" if "worker" in matching else None)
