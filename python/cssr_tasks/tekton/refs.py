"""Tekton's `$(...)` variables: parsing, the scopes they resolve in, and substitution.

One code path serves the check before the run and the run itself: before the run, results
and statuses are placeholders of the declared type, so a misspelled name fails with the
file and line where it is written, and the same substitution later inserts real values.

Only the roots Tekton knows are variables (`params`, `tasks`, `finally`, `results`,
`workspaces`, `context`, `steps`); a shell's `$(date)` in a script is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import Problems, Text, line_of
from .unsupported import refuse

REF = re.compile(r"\$\((?P<expr>\s*(?:params|tasks|finally|results|workspaces|context|steps|inputs|artifacts|step)"
                 r"(?=[.\[])[^()$]*)\)")
# Tekton artifacts (alpha): $(artifacts.path), $(step.artifacts.path), $(steps|tasks.<x>.inputs|outputs...)
ARTIFACTS = re.compile(r"^\s*(?:artifacts\.|step\.artifacts|(?:steps|tasks)\.[^.]+\.(?:inputs|outputs)\b)")
_TOKEN = re.compile(r"""\.(?P<name>[A-Za-z0-9_-]+)|\[(?P<q>['"])(?P<quoted>[^'"\]]+)(?P=q)\]"""
                    r"""|\[(?P<star>\*)\]|\[(?P<index>\d+)\]""")
STAR = "*"

Token = str | int  # a name, STAR, or an index


class RefError(Exception):
    """A reference that does not resolve; `missing` marks a result its task never produced."""

    def __init__(self, ref: str, reason: str, *, missing: bool = False, line: int = 0) -> None:
        super().__init__(f"{ref}: {reason}")
        self.ref = ref
        self.reason = reason
        self.missing = missing
        self.line = line


@dataclass(frozen=True)
class Unavailable:
    """A name that exists but has no value here: a result not produced, a status outside finally."""

    reason: str
    missing: bool = False


class Literal(Exception):
    """A reference Tekton neither validates nor substitutes: it stays in the text as written."""


@dataclass
class Level:
    """One level of names, e.g. the params, or the results of one task."""

    missing: str  # the message for a name that is not here: "Task x declares no param {name}"
    items: Mapping[str, Any] = field(default_factory=dict)
    # for a name that is not here, given the tokens after it: True when Tekton leaves the reference
    # as written (it validates only the names it knows, e.g. context.task.*, not context.anything)
    literal: Callable[[list[Any]], bool] | None = None


class Wildcard:
    """Whatever is below a pipeline task the executor refuses (a matrix task's results, say): any
    reference resolves, so that the refusal, not its consequences, is what the run reports."""


class AnyList(list[Any]):
    """Placeholder array before the run: any index resolves."""


class AnyDict(dict[str, Any]):
    """Placeholder object before the run: any key resolves."""


def parse(expr: str) -> list[Token]:
    expr = expr.strip()
    root = re.match(r"[A-Za-z]+", expr)
    if root is None:
        raise RefError(f"$({expr})", "is not a variable")
    tokens: list[Token] = [root.group(0)]
    pos = root.end()
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise RefError(f"$({expr})", f"cannot read {expr[pos:]!r}; write $(root.name) or $(root['name'])")
        if match["name"] is not None:
            tokens.append(match["name"])
        elif match["quoted"] is not None:
            tokens.append(match["quoted"])
        elif match["star"] is not None:
            tokens.append(STAR)
        else:
            tokens.append(int(match["index"]))
        pos = match.end()
    return tokens


def resolve(expr: str, scope: Level) -> Any:
    """The value of `$(expr)`: a string, or a whole array/object when written with `[*]`."""
    ref = f"$({expr.strip()})"
    tokens = parse(expr)
    node: Any = scope
    i = 0
    while isinstance(node, Level):
        known = ", ".join(sorted(k for k, v in node.items.items()
                                 if not isinstance(v, Unavailable) or v.missing)) or "none"
        if i >= len(tokens) or not isinstance(tokens[i], str) or tokens[i] == STAR:
            raise RefError(ref, f"is incomplete; it continues with one of: {known}")
        name = str(tokens[i])
        if name not in node.items and node.literal is not None and node.literal(tokens[i + 1:]):
            raise Literal(ref)
        if name not in node.items:
            raise RefError(ref, f"{node.missing.format(name=name)} (known: {known})")
        node = node.items[name]
        i += 1
    if isinstance(node, Unavailable):
        raise RefError(ref, node.reason, missing=node.missing)
    if isinstance(node, Wildcard):
        return AnyList() if tokens[-1] == STAR else ""
    return _select(ref, node, tokens[i:])


def _select(ref: str, value: Any, rest: list[Token]) -> Any:
    if not rest:  # an array or object named without [*] is the whole of it, as Tekton substitutes it
        return value
    head, tail = rest[0], rest[1:]
    if head == STAR and not tail:
        if not isinstance(value, (list, dict)):
            raise RefError(ref, "is a string; [*] only applies to arrays and objects")
        return value
    if isinstance(head, int):
        if not isinstance(value, list):
            raise RefError(ref, "is not an array; only arrays take an [index]")
        if isinstance(value, AnyList):
            return ""
        if head >= len(value):
            raise RefError(ref, f"index {head} is out of range (the array has {len(value)} item(s))")
        return _select(ref, value[head], tail)
    if isinstance(value, dict) and head != STAR:
        if isinstance(value, AnyDict) and head not in value:
            return ""
        if head not in value:
            raise RefError(ref, f"the object has no key {head!r} (keys: {', '.join(sorted(value)) or 'none'})")
        return _select(ref, value[head], tail)
    raise RefError(ref, f"cannot read {head!r} of a {'string' if isinstance(value, str) else 'value'}")


def expand(value: Any, scope: Level) -> Any:
    """Substitute every variable in value (a string, list or mapping), raising RefError on the first bad one.

    A string that is exactly one `$(x[*])` becomes the array or object itself; inside a list
    such an array is spliced in, as Tekton does for args and array params.
    """
    if isinstance(value, str):
        return _expand_string(value, scope)
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            expanded = expand(item, scope)
            if isinstance(item, str) and isinstance(expanded, list):
                out.extend(expanded)
            else:
                out.append(expanded)
        return out
    if isinstance(value, dict):
        return {k: expand(v, scope) for k, v in value.items()}
    return value


def _expand_string(text: str, scope: Level) -> Any:
    errors = string_errors(text, scope)
    if errors:
        raise errors[0]
    matches = list(REF.finditer(text))
    if not matches:
        return text
    if len(matches) == 1 and matches[0].span() == (0, len(text)):
        return _value(matches[0], scope)
    parts: list[str] = []
    pos = 0
    for match in matches:
        parts.append(text[pos:match.start()])
        parts.append(_value(match, scope))
        pos = match.end()
    parts.append(text[pos:])
    return "".join(parts)


def _value(match: re.Match[str], scope: Level) -> Any:
    try:
        return resolve(match["expr"], scope)
    except Literal:
        return match.group(0)


def string_errors(text: str, scope: Level) -> list[RefError]:
    """Every reference of text that does not resolve, each with its own line."""
    matches = list(REF.finditer(text))
    whole = len(matches) == 1 and matches[0].span() == (0, len(text))
    errors: list[RefError] = []
    for match in matches:
        where = text.line_at(match.start()) if isinstance(text, Text) else line_of(text)
        try:
            value = resolve(match["expr"], scope)
        except Literal:
            continue
        except RefError as e:
            e.line = e.line or where
            errors.append(e)
            continue
        if not whole and not isinstance(value, str):
            errors.append(RefError(match.group(0), "is an array or object; it can only stand alone as a whole "
                                   "value (with or without [*]), not inside a longer string", line=where))
    return errors


def references(value: Any) -> list[tuple[list[Token], int]]:
    """Every variable in value, parsed, with its line (bad syntax is left for expand to report)."""
    found: list[tuple[list[Token], int]] = []
    if isinstance(value, str):
        for match in REF.finditer(value):
            try:
                found.append((parse(match["expr"]), line_of(value)))
            except RefError:
                pass
    elif isinstance(value, list):
        for item in value:
            found += references(item)
    elif isinstance(value, dict):
        for item in value.values():
            found += references(item)
    return found


@dataclass
class Expander:
    """Substitution that records problems (`file:line: $(ref): reason`) instead of stopping at the first."""

    problems: Problems
    missing: list[str] = field(default_factory=list)

    def __call__(self, value: Any, scope: Level, file: Path, line: int = 0) -> Any:
        """The expanded value, or None when a reference failed (the problem is recorded)."""
        ok = True
        if isinstance(value, list):
            out: list[Any] = []
            for item in value:
                expanded = self(item, scope, file, line)
                if expanded is None:
                    ok = False
                elif isinstance(item, str) and isinstance(expanded, list):
                    out.extend(expanded)
                else:
                    out.append(expanded)
            return out if ok else None
        if isinstance(value, dict):
            mapped = {k: self(v, scope, file, line) for k, v in value.items()}
            return None if any(v is None for k, v in mapped.items() if value[k] is not None) else mapped
        errors = string_errors(value, scope) if isinstance(value, str) else []
        for e in errors:
            if ARTIFACTS.match(e.ref[2:-1]):
                refuse(self.problems, file, e.line or line_of(value) or line, e.ref, "artifacts")
            elif e.missing:
                self.missing.append(f"{e.ref}: {e.reason}")
            else:
                self.problems.add(file, e.line or line_of(value) or line, f"{e.ref}: {e.reason}")
        return None if errors else expand(value, scope)


def expand_known(text: str, scope: Level) -> str:
    """Substitute the references of text that resolve to strings in scope, and leave the rest as written.

    Tekton substitutes in passes (params, then context, results, workspaces): a value one pass
    inserts may hold a variable of a later pass, and what no pass knows stays as it is.
    """
    def one(match: re.Match[str]) -> str:
        try:
            value = resolve(match["expr"], scope)
        except (RefError, Literal):
            return match.group(0)
        return value if isinstance(value, str) else match.group(0)

    return REF.sub(one, text)
