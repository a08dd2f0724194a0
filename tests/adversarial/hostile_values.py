"""Hostile values for every param of every command, generated from each param's format.

Each param is given a format (FORMATS, keyed by param name, checked complete against the
commands' Params); each format says, for each category of hostile value (empty, wrong type,
huge, negative, unicode, path traversal, shell metacharacters, YAML injection), which values
it must refuse and which it may accept. The rule is "accepted only if valid": a free-form
value that is valid for its format is not a defect, so a format that takes it says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cssr_tasks.cli import COMMANDS, load
from cssr_tasks.params import MAX_VALUE_CHARS, param_name

REFUSE, EITHER = "refuse", "either"
# Commands the suite drives through their params; the others take flags (tested apart).
FLAG_COMMANDS = {"pipeline", "sim"}

# -- the values, by category ---------------------------------------------------------------------

CANARY = "/tmp/cssr-adversarial-canary"  # a shell that ran any of these would create it

CATEGORIES: dict[str, tuple[str, ...]] = {
    "huge": ("9" * 25, "1e20", "x" * (MAX_VALUE_CHARS + 1), "a" * 300),
    "negative": ("-1", "-0.5", "-9223372036854775809"),
    "unicode": ("wörker", "\uff57\uff4f\uff52\uff4b", "\u0663\u0662", "a\u202eb", "\U0001f4a5"),
    "path-traversal": ("../../../etc/passwd", "/etc/../etc/shadow", "..", "a/../../b"),
    "shell": (f"$(touch {CANARY})", f"`touch {CANARY}`", f"a; touch {CANARY}", "a|b", "a && b", "*", "~root"),
    "yaml": ("a\nkind: Secret", "{a: b}", "!!python/object/apply:os.system ['id']", "- a\n- b", "&x a", "a: b"),
}
WRONG_TYPE: dict[str, tuple[str, ...]] = {
    "int": ("abc", "1.5", "true", "nan", "inf", "0x10", "1_000", "[1]"),
    "seconds": ("abc", "true", "nan", "inf", "-inf", "0x10", "[1]", "1,5"),
    "bool": ("maybe", "2", "truee", "[true]", '"true"'),
    "list": ('{"a": 1}', '"x"', "[1]", "[null]", "[[]]", '[{"a": 1}]', "[", "NaN"),
    "dict": ("[]", '"x"', "1", "[", '{"a": {"b": NaN}}', "null"),
    "str": ('["x"]', '{"a": 1}', "null"),
}


NAME_LIKE = {"null", "1e20", "9" * 25}


@dataclass(frozen=True)
class Format:
    kind: str  # int, seconds, bool, list, dict or str
    required: bool = False
    # Categories (or single values) whose values this format may legitimately accept.
    may_accept: frozenset[str] = frozenset()
    extra: tuple[str, ...] = ()  # values of this format's own to refuse (e.g. template fields)


def fmt(kind: str, *, required: bool = False, accepts: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> Format:
    return Format(kind, required, frozenset(accepts), extra)


NAME = fmt("str")
IMAGE = fmt("str")
PATH = fmt("str", accepts=("unicode",))  # file names may be any UTF-8 on Linux
QUANTITY = fmt("str")
CHOICE = fmt("str")
INT, SECONDS, BOOL = fmt("int"), fmt("seconds"), fmt("bool")
TLS = fmt("str")  # true, false or an existing CA bundle
NAMES = fmt("list")  # a comma list or JSON array of names
KERNELS = fmt("list", required=True)

FORMATS: dict[str, Format] = {
    # names
    "namespace": NAME, "pipeline-namespace": NAME, "pool": NAME,
    "statefulset": NAME, "credentials-secret": NAME, "resource-name": NAME, "state-configmap": NAME,
    "deploy-state-configmap": NAME, "modules-storage-class": NAME, "data-storage-class": NAME,
    "router-name": fmt("str", accepts=("unicode",)), "pipeline-run": NAME,
    "kernel-set-id": fmt("str", required=True),
    # images
    "image-repository": IMAGE, "base-image": IMAGE, "router-image": IMAGE, "traffic-image": IMAGE,
    "init-image": IMAGE, "kmod-builder-image": IMAGE, "tasks-image": IMAGE,
    # paths
    "docker-config": PATH, "context-dir": PATH, "modules-dir": PATH, "builder-root": PATH, "kernel-tree-dir": PATH,
    "signing-secret-dir": PATH, "credentials-dir": PATH, "secret-file": PATH,
    "builder-output": fmt("str", accepts=("unicode",), extra=(
        "{kernel.foo}", "{kernel[x]}", "{kernel:>2000000000}", "{builder_root.__class__}", "{nope}")),
    # choices, quantities, selectors, URLs
    "hugepages-method": CHOICE, "hugepages-size": CHOICE, "network-mode": CHOICE, "dtk-source": CHOICE,
    "kernel-type": CHOICE, "device-type": CHOICE, "modules-storage": CHOICE, "api-scheme": CHOICE, "aggregate-status": CHOICE,
    "hugepages-request": QUANTITY, "cpu": QUANTITY, "memory": QUANTITY, "modules-size": QUANTITY,
    "data-size": QUANTITY, "cpu-reserved": QUANTITY, "cpu-isolated": QUANTITY,
    "node-selector": fmt("str"), "eventlistener-url": fmt("str"), "tls-verify": TLS,
    # numbers and flags
    "replicas": INT, "num-vfs": INT, "hugepages-count": INT, "lock-timeout": INT, "stale-after": INT,
    "api-port": INT, "traffic-count": INT, "max-packet-loss": INT, "max-rtt-ms": INT, "timeout": INT,
    "health-port": INT, "resync-seconds": INT, "watch-timeout-seconds": INT, "confirm-seconds": INT,
    "gate-timeout": SECONDS, "rollout-timeout": SECONDS, "nodes-timeout": SECONDS, "poll-interval": SECONDS, "interval": SECONDS,
    "keep-kernel-sets": INT, "min-age": SECONDS, "dry-run": BOOL,
    "allow-updating": BOOL, "include-upgrade-target": BOOL, "allow-mixed-kernels": BOOL,
    "require-signature": BOOL, "traffic": BOOL, "allow-control-plane": BOOL, "signing-key-bound": BOOL,
    # lists and maps
    # "NaN" in the comma form is one module of that name, which a kernel module may be (names are file names).
    # So is "NaN" as a PF (Linux interface names: dev_valid_name) or as the name of a kernel argument to allow.
    "pools": NAMES, "pf-names": fmt("list", accepts=("NaN",)), "modules": fmt("list", accepts=("NaN",)),
    "kernel-args": NAMES, "allow-kernel-args": fmt("list", accepts=("NaN",)),
    # A command line in shell words (the Task: "split like a shell would"), not a list: its first word is the
    # program, by the path rule; "a && b" is program a with two arguments (no shell runs it).
    "builder-command": fmt("str", accepts=("unicode", "a && b")),
    "kernel-versions": KERNELS, "kernels": KERNELS, "networks": fmt("list"),
    "dtk-images": fmt("dict", required=True), "task-statuses": fmt("dict"),
    "traffic-client": fmt("dict"), "traffic-server": fmt("dict"),
}
# Params some commands require (report's pipeline-run and namespace), by command.
REQUIRED_BY: dict[str, set[str]] = {"report": {"pipeline-run", "namespace"}, "verify-image": {"kernel-set-id"},
                                    "check-init-image": {"kernel-set-id"}, "build-init-image": {"kernel-set-id"},
                                    "watch-pools": {"namespace"}, "prune": {"namespace"},
                                    # documented as required: an empty selector would select every node
                                    # (preflight takes it with a pool, which the base environment names not)
                                    "render": {"node-selector"}, "apply-manifests": {"node-selector"},
                                    "preflight": {"node-selector"},
                                    # given empty, refused: it used to mean the default /usr/lib/modules, the
                                    # host's own folder, where build-kmods put its lock and staging (issue 14, 5)
                                    "build-kmods": {"modules-dir"}, "verify-kmods": {"modules-dir"}}
# Params whose empty value has its own documented meaning rather than the default (the Task's
# description says so; the commands' own tests show it): "none", "the cluster's default class",
# "skip the check". Their empty case may be accepted as something other than the default.
EMPTY_MEANS: dict[str, set[str]] = {
    command: {"kernel-args", "modules-storage-class", "data-storage-class"}
    for command in ("render", "apply-manifests")} | {"preflight": {"image-repository"}}


@dataclass(frozen=True)
class Case:
    command: str
    param: str
    category: str
    value: str
    expect: str  # REFUSE, EITHER, or "default" (accepted and the same as not giving it)

    @property
    def id(self) -> str:
        shown = self.value if len(self.value) <= 24 else f"{self.value[:12]}...{len(self.value)}"
        return f"{self.command}:{self.param}:{self.category}:{shown!r}"


def commands() -> dict[str, Any]:
    """Each module once, under the first (the Task's) name: `apply` is apply-manifests."""
    seen: dict[str, str] = {}
    for command, module in COMMANDS.items():
        if command not in FLAG_COMMANDS and module not in seen.values():
            seen[command] = module
    return {command: load(command) for command in seen}


def params_of(module: Any) -> list[str]:
    return [f.metadata.get("param", param_name(f.name)) for f in dataclasses.fields(module.Params)]


def cases() -> Iterator[Case]:
    for command, module in commands().items():
        for param in params_of(module):
            if param in FORMATS:  # test_every_param_of_every_command_has_a_format names the others
                yield from cases_for(command, param, FORMATS[param])


def cases_for(command: str, param: str, form: Format) -> Iterator[Case]:
    required = form.required or param in REQUIRED_BY.get(command, set())
    empty_means = param in EMPTY_MEANS.get(command, set())
    yield Case(command, param, "empty", "", REFUSE if required else EITHER if empty_means else "default")
    for value in WRONG_TYPE[form.kind if form.kind in WRONG_TYPE else "str"]:
        ok = (form.kind == "str" and value in NAME_LIKE) or value in form.may_accept
        yield Case(command, param, "wrong-type", value, EITHER if ok else REFUSE)
    for category, values in CATEGORIES.items():
        for value in values:
            if form.kind in ("int", "seconds") and category == "huge" and value == "a" * 300:
                continue  # a wrong type, not a huge number
            ok = category in form.may_accept or value in form.may_accept
            if form.kind in ("str", "list") and value in NAME_LIKE:
                ok = True  # "null", "1e20" and 25 digits are valid names and tags
            if form.kind == "seconds" and value == "1e20":
                ok = False
            yield Case(command, param, category, as_kind(form.kind, value), EITHER if ok else REFUSE)
    for value in form.extra:
        yield Case(command, param, "format", value, REFUSE)


def as_kind(kind: str, value: str) -> str:
    """A list param gets the hostile value as the one item of a JSON array (its comma form is
    the bare value, which the str forms already cover); a map param as a value of a key."""
    import json

    if len(value) > MAX_VALUE_CHARS:
        return value
    if kind == "list":
        return json.dumps([value])
    if kind == "dict":
        return json.dumps({"5.14.0-427.el9.x86_64": value, "preflight": value, "network": value})
    return value
