"""What the cssr-deploy EventListener does with an event, evaluated in Python from triggers/*.yaml.

The CEL filter and overlays run in cel-python. Tekton Triggers' own CEL extensions are not part
of it, so they are implemented here with the semantics documented in tektoncd/triggers
docs/cel_expressions.md and implemented in pkg/interceptors/cel/triggers.go:

- `header` is Go's `http.Header`, a map of canonical header names to lists of values;
- `header.canonical(name)` is `http.Header.Get`: the first value under the canonical form of
  `name`, or "" when there is none;
- `header.match(name, value)` is `header.canonical(name) == value`;
- `<string>.compareSecret(key, secretName[, namespace])` reads key `key` of the Secret (in the
  EventListener's namespace unless one is given) and compares in constant time; a missing Secret
  or key is an evaluation error, which rejects the event.

An interceptor rejects the event when the filter is false or fails; overlays then add
`extensions`. The binding resolves `$(body.x)`, `$(extensions.x)` and `$(header.x)`, and the
template substitutes `$(tt.params.x)` (falling back to each param's default), as the
EventListener does before it creates the PipelineRun. `FakeEventListener` serves all of that
over HTTP for pytest-httpserver and creates the PipelineRun in the simulated cluster.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes

from support import REPO

TRIGGERS = REPO / "triggers"
NAMESPACE = "cssr-deploy"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def canonical_key(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey: `x-cssr-trigger-token` -> `X-Cssr-Trigger-Token`.
    A name with a character outside the HTTP token set is returned unchanged, as Go does."""
    if not _TOKEN.match(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def go_header(headers: Mapping[str, Any]) -> dict[str, list[str]]:
    """Request headers as the EventListener's `http.Header` holds them."""
    result: dict[str, list[str]] = {}
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        result.setdefault(canonical_key(name), []).extend(str(v) for v in values)
    return result


def to_python(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.MapType):
        return {str(k): to_python(v) for k, v in value.items()}
    if isinstance(value, celtypes.ListType):
        return [to_python(v) for v in value]
    return value


class CelError(Exception):
    pass


@dataclass
class Outcome:
    accepted: bool
    extensions: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class CelInterceptor:
    """The `cel` ClusterInterceptor with one filter and its overlays."""

    def __init__(self, filter: str, overlays: list[dict[str, str]], *,
                 secrets: Mapping[tuple[str, str], Mapping[str, str]], namespace: str = NAMESPACE) -> None:
        self.env = celpy.Environment()
        self.secrets = secrets
        self.namespace = namespace
        self.filter = self.env.program(self.env.compile(filter), functions=self.functions())
        self.overlays = [(o["key"], self.env.program(self.env.compile(o["expression"]), functions=self.functions()))
                         for o in overlays]

    @classmethod
    def from_eventlistener(cls, path: Path = TRIGGERS / "eventlistener.yaml", *, trigger: str = "kernel-change",
                           pools: tuple[str, ...] | None = None, **kwargs: Any) -> CelInterceptor:
        """The interceptor as the YAML has it; `pools` replaces its pool list, as a user's patch would."""
        listener = yaml.safe_load(path.read_text())
        spec = next(t for t in listener["spec"]["triggers"] if t["name"] == trigger)
        cel = next(i for i in spec["interceptors"] if i["ref"]["name"] == "cel")
        params = {p["name"]: p["value"] for p in cel["params"]}
        text = params["filter"]
        if pools is not None:
            shipped = "body.pool in ['worker']"
            if shipped not in text:
                raise AssertionError(f"the filter no longer holds {shipped!r}; update this helper")
            text = text.replace(shipped, "body.pool in [" + ", ".join(f"'{p}'" for p in pools) + "]")
        return cls(text, params.get("overlays") or [], **kwargs)

    def functions(self) -> dict[str, Any]:
        def canonical(header: Any, name: Any) -> celtypes.StringType:
            key = celtypes.StringType(canonical_key(str(name)))
            values = header[key] if isinstance(header, Mapping) and key in header else None
            return celtypes.StringType(str(values[0]) if values else "")

        def match(header: Any, name: Any, value: Any) -> celtypes.BoolType:
            return celtypes.BoolType(str(canonical(header, name)) == str(value))

        def compare_secret(value: Any, key: Any, name: Any, namespace: Any = None) -> celtypes.BoolType:
            secret = self.secrets.get((str(namespace or self.namespace), str(name)))
            if secret is None or str(key) not in secret:
                raise CelError(f"failed to find secret {name!s} key {key!s} in compareSecret")
            return celtypes.BoolType(hmac.compare_digest(secret[str(key)].encode(), str(value).encode()))

        return {"canonical": canonical, "match": match, "compareSecret": compare_secret}

    def evaluate(self, body: Any, headers: Mapping[str, Any]) -> Outcome:
        activation = {"body": celpy.json_to_cel(body), "header": celpy.json_to_cel(go_header(headers)),
                      "requestURL": celtypes.StringType("http://el-cssr-deploy.cssr-deploy.svc.cluster.local:8080/"),
                      "extensions": celpy.json_to_cel({})}
        try:
            verdict = self.filter.evaluate(activation)
        except Exception as e:
            return Outcome(False, error=f"filter failed: {e}")
        if isinstance(verdict, Exception) or not isinstance(verdict, celtypes.BoolType):
            return Outcome(False, error=f"filter did not evaluate to a bool: {verdict!r}")
        if not verdict:
            return Outcome(False)
        extensions: dict[str, Any] = {}
        for key, program in self.overlays:
            try:
                value = program.evaluate(activation)
            except Exception as e:
                return Outcome(False, error=f"overlay {key} failed: {e}")
            if isinstance(value, Exception):
                return Outcome(False, error=f"overlay {key} failed: {value}")
            extensions[key] = to_python(value)
        return Outcome(True, extensions)


_REF = re.compile(r"\$\(([^()]+)\)")


def _path(root: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(root, Mapping) or part not in root:
            raise KeyError(dotted)
        root = root[part]
    return root


class Template:
    """The TriggerBinding and TriggerTemplate of a trigger, resolved as the EventListener does."""

    def __init__(self, binding: Path = TRIGGERS / "triggerbinding.yaml",
                 template: Path = TRIGGERS / "triggertemplate.yaml") -> None:
        self.binding = yaml.safe_load(binding.read_text())
        self.template = yaml.safe_load(template.read_text())

    def params(self, body: Any, extensions: Mapping[str, Any], headers: Mapping[str, Any]) -> dict[str, str]:
        context = {"body": body, "extensions": extensions, "header": {k: ",".join(v) for k, v in
                                                                      go_header(headers).items()}}
        values: dict[str, str] = {}
        for param in self.binding["spec"]["params"]:
            try:
                text = _REF.sub(lambda m: _scalar(_path(context, m.group(1))), param["value"])
            except KeyError:
                continue  # an unresolved path falls back to the template's default
            values[param["name"]] = text
        return values

    def render(self, values: Mapping[str, str]) -> list[dict[str, Any]]:
        declared = {p["name"]: p for p in self.template["spec"]["params"]}
        resolved = {}
        for name, param in declared.items():
            if name in values:
                resolved[name] = values[name]
            elif "default" in param:
                resolved[name] = str(param["default"])
            else:
                raise KeyError(f"TriggerTemplate param {name} has no value and no default")
        text = json.dumps(self.template["spec"]["resourcetemplates"])

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in declared:
                raise KeyError(f"$(tt.params.{name}) is not declared")
            return json.dumps(resolved[name])[1:-1]  # no escaping beyond JSON's, as in Triggers

        return list(json.loads(re.sub(r"\$\(tt\.params\.([-A-Za-z0-9_]+)\)", substitute, text)))


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Received:
    body: Any
    headers: dict[str, str]
    status: int
    accepted: bool
    event_id: str


class FakeEventListener:
    """A pytest-httpserver handler that behaves like el-cssr-deploy: 202 for every well-formed
    request (also for a rejected event, as Triggers does), and a PipelineRun in the simulated
    cluster for each accepted one. `outage(n)` answers 503 to the next n requests."""

    def __init__(self, sim: Any, token: str, *, namespace: str = NAMESPACE,
                 pools: tuple[str, ...] | None = None) -> None:
        self.sim = sim
        self.namespace = namespace
        self.interceptor = CelInterceptor.from_eventlistener(
            secrets={(namespace, "cssr-trigger-secret"): {"token": token}}, namespace=namespace, pools=pools)
        self.template = Template()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.down = 0

    def outage(self, requests: int) -> None:
        with self.lock:
            self.down = requests

    def accepted(self) -> list[dict[str, Any]]:
        return [r.body for r in self.received if r.accepted]

    def __call__(self, request: Any) -> Any:
        from werkzeug.wrappers import Response

        body = json.loads(request.get_data() or b"null")
        headers = dict(request.headers.items())
        with self.lock:
            if self.down > 0:
                self.down -= 1
                self.received.append(Received(body, headers, 503, False, ""))
                return Response("EventListener unavailable", status=503)
        event_id = str(uuid.uuid4())
        outcome = self.interceptor.evaluate(body, headers)
        if outcome.accepted:
            for obj in self.template.render(self.template.params(body, outcome.extensions, headers)):
                meta = obj["metadata"]
                meta["name"] = meta.pop("generateName") + uuid.uuid4().hex[:5]
                meta["namespace"] = self.namespace
                meta.setdefault("labels", {}).update({
                    "triggers.tekton.dev/eventlistener": "cssr-deploy",
                    "triggers.tekton.dev/trigger": "kernel-change",
                    "triggers.tekton.dev/triggers-eventid": event_id})
                self.sim.put(obj)
        with self.lock:
            self.received.append(Received(body, headers, 202, outcome.accepted, event_id))
        return Response(json.dumps({"eventListener": "cssr-deploy", "namespace": self.namespace,
                                    "eventListenerUID": "4f1c", "eventID": event_id}),
                        status=202, content_type="application/json")
