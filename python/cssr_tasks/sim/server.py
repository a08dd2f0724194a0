"""kmock's Kubernetes emulator, with the API-server behaviour our steps rely on filled in.

kmock parses requests, serves discovery and runs the HTTP server. Where it falls short of a
real API server (label and field selectors, pagination, server-side apply that creates, PUT,
resourceVersion and optimistic concurrency, watch resumption with 410 Gone, list kinds, pods/log), the
emulator below implements the behaviour itself, over its own thread-safe store. Every request
is recorded, so that tests and the RBAC check can read what a step asked of the cluster.

This is test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml

from .. import selectors
from ..cluster import KINDS

ResourceKey = tuple[str, str, str]  # (group, version, plural)
ObjectKey = tuple[ResourceKey, str | None, str]  # (resource, namespace, name)

_PLURAL_KIND = {plural: kind for kind, (plural, _) in KINDS.items()}
_NAMESPACED = {plural: namespaced for _, (plural, namespaced) in KINDS.items()}
# kmock reads /api/v1/namespaces/<x> as "namespace <x>" and fails on /api/v1/namespaces: the emulator
# routes the Namespace resource itself.
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?")


@dataclass
class Recorded:
    """One request as the API server saw it, in RBAC terms (verb, group, resource, namespace)."""

    method: str
    path: str
    query: dict[str, str]
    verb: str
    group: str | None
    version: str | None
    resource: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    content_type: str
    body: Any
    status: int = 0
    wrote: bool = False  # did the request change stored state

    @property
    def is_write(self) -> bool:
        return self.verb in ("create", "update", "patch", "delete")


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    after: bool = False  # serve the request first, then lose its answer (a write that happened, seen failing)


class GoneError(Exception):
    pass


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any, *, keyed_lists: bool = False) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, null deletes, everything else replaces.

    With `keyed_lists`, lists of named maps merge by name, which is the part of a strategic merge
    patch our steps rely on.
    """
    if keyed_lists and isinstance(patch, list) and isinstance(target, list) and all(
            isinstance(i, dict) and "name" in i for i in patch + target):
        merged = {i["name"]: copy.deepcopy(i) for i in target}
        for item in patch:
            merged[item["name"]] = merge_patch(merged.get(item["name"]), item, keyed_lists=True)
        return list(merged.values())
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, keyed_lists=keyed_lists)
    return result


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_matches(selector: str, obj: dict[str, Any]) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            path, value = term.split("!=", 1)
            if _field(obj, path.strip()) == value.strip():
                return False
        else:
            path, value = term.replace("==", "=").split("=", 1)
            if _field(obj, path.strip()) != value.strip():
                return False
    return True


class Store:
    """Objects by (resource, namespace, name), with a resourceVersion counter and event history."""

    def __init__(self, history_limit: int = 10000) -> None:
        self.lock = threading.RLock()
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.rv = 1000
        self.history: list[tuple[int, ResourceKey, str, dict[str, Any]]] = []
        self.history_limit = history_limit
        self.compacted = 0  # watches from a resourceVersion below this get 410 Gone
        self.listeners: list[Callable[[ResourceKey, str, dict[str, Any]], None]] = []

    def _emit(self, resource: ResourceKey, kind: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, resource, kind, copy.deepcopy(obj)))
        if len(self.history) > self.history_limit:
            dropped = self.history[: len(self.history) - self.history_limit]
            self.compacted = dropped[-1][0]
            del self.history[: len(dropped)]
        for listener in list(self.listeners):
            listener(resource, kind, obj)

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: older watches must relist."""
        with self.lock:
            self.compacted = self.rv
            self.history.clear()

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def put(self, key: ObjectKey, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store obj (create or replace); a no-op write keeps the resourceVersion. Returns (obj, changed)."""
        with self.lock:
            old = self.objects.get(key)
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta["name"] = key[2]
            if key[1]:
                meta["namespace"] = key[1]
            if old is not None:
                old_meta = old.get("metadata", {})
                for keep in ("uid", "creationTimestamp"):
                    if keep in old_meta:
                        meta[keep] = old_meta[keep]
                meta["resourceVersion"] = old_meta.get("resourceVersion")
                meta["generation"] = old_meta.get("generation", 1)
                if _strip_volatile(obj) == _strip_volatile(old):
                    return copy.deepcopy(old), False
                if obj.get("spec") != old.get("spec"):
                    meta["generation"] = int(old_meta.get("generation", 1)) + 1
            else:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                meta.setdefault("generation", 1)
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[key] = obj
            self._emit(key[0], "ADDED" if old is None else "MODIFIED", obj)
            return copy.deepcopy(obj), True

    def delete(self, key: ObjectKey) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.pop(key, None)
            if obj is not None:
                self.rv += 1
                obj["metadata"]["resourceVersion"] = str(self.rv)
                self._emit(key[0], "DELETED", obj)
            return obj

    def items(self, resource: ResourceKey, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            found = [copy.deepcopy(o) for (r, ns, _), o in self.objects.items()
                     if r == resource and (namespace is None or ns == namespace)]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))

    def events_since(self, resource: ResourceKey, rv: int) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            if rv < self.compacted:
                raise GoneError(f"too old resource version: {rv} ({self.compacted})")
            return [(kind, copy.deepcopy(obj)) for (erv, r, kind, obj) in self.history if r == resource and erv > rv]


def _strip_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    clone = copy.deepcopy(obj)
    meta = clone.get("metadata", {})
    for key in ("resourceVersion", "generation", "managedFields"):
        meta.pop(key, None)
    return clone


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    store: Store = attrs.field(factory=Store)
    requests_log: list[Recorded] = attrs.field(factory=list)
    faults: list[Fault] = attrs.field(factory=list)
    # Called after every successful write, under the store lock: (emulator, record, object).
    # Simulated controllers (rollouts, operators) hook in here.
    controllers: list[Callable[[Emulator, Recorded, dict[str, Any] | None], None]] = attrs.field(factory=list)
    # Called before a write is stored, under the store lock: (record, old or None, new) -> None to admit,
    # or the reason to reject it with 422 Invalid (immutable fields, as the real API server validates).
    admission: list[Callable[[Recorded, dict[str, Any] | None, dict[str, Any]], str | None]] = attrs.field(
        factory=list)
    # Container logs, served as text by GET pods/<name>/log as the kubelet would: (namespace, pod,
    # container) -> text. Nothing runs containers here: simulated controllers that "run" a pod write it.
    logs: dict[tuple[str, str, str], str] = attrs.field(factory=dict)
    loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _NAMESPACE_PATH.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        request = kmock.Request(
            raw_request=raw_request, url=raw_request.url, method=raw_request.method,
            params=dict(raw_request.query), headers=dict(raw_request.headers),
            body=await raw_request.read(), text=await raw_request.text(),
            resource=kmock.resource(group="", version="v1", plural="namespaces"),
            namespace=None, name=match["name"], subresource=match["sub"])
        return await self._handle(request)

    def _get_resources(self) -> list[Any]:
        resources = set(super()._get_resources())
        with self.store.lock:
            for (group, version, plural), _, _ in self.store.objects:
                resources.add(kmock.resource(group, version, plural))
        return list(resources)

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is None or not resource.plural:
            return await super()._handle(request)
        raw = request._raw_request
        record = Recorded(
            method=str(raw.method), path=str(raw.path), query=dict(raw.query),
            verb="", group=resource.group, version=resource.version, resource=resource.plural,
            subresource=request.subresource, namespace=request.namespace, name=request.name,
            content_type=raw.headers.get("Content-Type", ""), body=None,
        )
        record.verb = self._verb(record)
        with self.store.lock:
            self.requests_log.append(record)
        fault = self._fault(record)
        if fault is not None and not fault.after:
            record.status = fault.status
            return self._status(fault.status, "Injected fault", f"injected {fault.status}", headers=fault.headers)
        try:
            if record.verb == "watch":
                return await self._watch(request, record)
            response = self._serve(request, record)
        except GoneError as e:
            record.status = 410
            return self._status(410, "Expired", str(e))
        record.status = response.status
        if fault is not None:  # after: the request was served, its answer is lost
            record.status = fault.status
            return self._status(fault.status, "Injected fault", f"injected {fault.status}", headers=fault.headers)
        return response

    @staticmethod
    def _verb(r: Recorded) -> str:
        if r.method == "GET":
            return "watch" if r.query.get("watch") in ("true", "1") else ("get" if r.name else "list")
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(r.method, r.method.lower())

    def _fault(self, r: Recorded) -> Fault | None:
        with self.store.lock:
            for fault in self.faults:
                if fault.times and fault.method in (r.method, "*") and fault.path_contains in r.path:
                    fault.times -= 1
                    return fault
        return None

    @staticmethod
    def _status(code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}
        return aiohttp.web.json_response(body, status=code, headers=headers)

    def _key(self, request: Any, name: str | None = None, namespace: str | None = None) -> ObjectKey:
        res = request.resource
        ns = namespace if namespace is not None else request.namespace
        if not _NAMESPACED.get(res.plural, True):
            ns = None
        return ((res.group or "", res.version or "", res.plural), ns, name or request.name)

    def _body(self, request: Any, record: Recorded) -> Any:
        text = request.text or ""
        if "yaml" in record.content_type:
            body = yaml.safe_load(text) if text.strip() else None
        else:
            body = json.loads(text) if text.strip() else None
        record.body = body
        return body

    def _serve(self, request: Any, r: Recorded) -> aiohttp.web.Response:
        res_key: ResourceKey = (r.group or "", r.version or "", r.resource or "")
        if r.verb == "list":
            return self._list(res_key, r)
        body = self._body(request, r) if r.method in ("POST", "PUT", "PATCH") else None
        if r.verb == "create":
            if not isinstance(body, dict):
                return self._status(400, "BadRequest", "the body is not an object")
            key = self._key(request, name=(body.get("metadata") or {}).get("name"),
                            namespace=request.namespace or (body.get("metadata") or {}).get("namespace"))
            if not key[2]:
                return self._status(422, "Invalid", "metadata.name is required")
            with self.store.lock:
                if self.store.get(key) is not None:
                    return self._status(409, "AlreadyExists", f'{r.resource} "{key[2]}" already exists')
                if (reason := self._admit(r, None, body)) is not None:
                    return self._status(422, "Invalid", reason)
                obj, r.wrote = self.store.put(key, body)
                self._after_write(r, obj)
            return aiohttp.web.json_response(obj, status=201)
        key = self._key(request)
        if r.verb == "get" and r.resource == "pods" and r.subresource == "log":
            return self._log(key, r)
        if r.verb == "get":
            found = self.store.get(key)
            if found is None:
                return self._status(404, "NotFound", f'{r.resource} "{key[2]}" not found')
            return aiohttp.web.json_response(found)
        if r.verb == "delete":
            with self.store.lock:
                deleted = self.store.delete(key)
                if deleted is None:
                    return self._status(404, "NotFound", f'{r.resource} "{key[2]}" not found')
                r.wrote = True
                self._after_write(r, None)
            return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if r.verb == "update":
            with self.store.lock:
                old = self.store.get(key)
                if old is None:
                    return self._status(404, "NotFound", f'{r.resource} "{key[2]}" not found')
                wanted_rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
                if wanted_rv and wanted_rv != old["metadata"].get("resourceVersion"):
                    return self._status(409, "Conflict", "the object has been modified; please apply your "
                                                          "changes to the latest version and try again")
                new = self._subresource_write(old, body, r.subresource, replace=True)
                if (reason := self._admit(r, old, new)) is not None:
                    return self._status(422, "Invalid", reason)
                obj, r.wrote = self.store.put(key, new)
                self._after_write(r, obj)
            return aiohttp.web.json_response(obj)
        if r.verb == "patch":
            with self.store.lock:
                old = self.store.get(key)
                if "apply-patch" in r.content_type:
                    if not isinstance(body, dict):
                        return self._status(400, "BadRequest", "the applied configuration is not an object")
                    new = self._apply(old, body, r.query.get("fieldManager", ""))
                    status = 201 if old is None else 200
                elif old is None:
                    return self._status(404, "NotFound", f'{r.resource} "{key[2]}" not found')
                else:
                    new = self._patch(old, body, r.content_type, r.subresource)
                    status = 200
                if (reason := self._admit(r, old, new)) is not None:
                    return self._status(422, "Invalid", reason)
                if r.query.get("dryRun"):
                    return aiohttp.web.json_response(new, status=status)
                obj, r.wrote = self.store.put(key, new)
                if r.wrote:
                    self._after_write(r, obj)
            return aiohttp.web.json_response(obj, status=status)
        return self._status(405, "MethodNotAllowed", f"{r.method} is not supported here")

    def _log(self, key: ObjectKey, r: Recorded) -> aiohttp.web.Response:
        """pods/log: text/plain, with the API server's errors for a missing pod or container."""
        pod = self.store.get(key)
        if pod is None:
            return self._status(404, "NotFound", f'pods "{key[2]}" not found')
        names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        container = r.query.get("container") or (names[0] if len(names) == 1 else "")
        if not container:
            return self._status(400, "BadRequest", f"a container name must be specified for pod {key[2]}, "
                                                   f"choose one of: {names}")
        if container not in names:
            return self._status(400, "BadRequest", f"container {container} is not valid for pod {key[2]}")
        text = self.logs.get((key[1] or "", key[2], container))
        if text is None:
            return self._status(400, "BadRequest", f'container "{container}" in pod "{key[2]}" is waiting to '
                                                   "start: ContainerCreating")
        return aiohttp.web.Response(text=text, content_type="text/plain")

    @staticmethod
    def _subresource_write(old: dict[str, Any], body: Any, subresource: str | None, replace: bool) -> dict[str, Any]:
        if subresource == "status":
            new = copy.deepcopy(old)
            new["status"] = (body or {}).get("status", {})
            return new
        new = copy.deepcopy(body)
        if old.get("status") is not None and "status" not in new:
            new["status"] = old["status"]
        return new

    @staticmethod
    def _apply(old: dict[str, Any] | None, config: dict[str, Any], manager: str) -> dict[str, Any]:
        # Approximation of server-side apply: the applied configuration's fields win, other
        # fields (status, other managers' fields) are kept, and lists are replaced whole.
        # A real API server merges keyed lists and removes fields the manager dropped.
        new: dict[str, Any] = merge_patch(old or {}, {k: v for k, v in config.items() if k != "status"})
        if old is not None and "status" in old:
            new["status"] = old["status"]
        managers = [m for m in (new.get("metadata", {}).get("managedFields") or []) if m.get("manager") != manager]
        managers.append({"manager": manager, "operation": "Apply", "apiVersion": config.get("apiVersion")})
        new.setdefault("metadata", {})["managedFields"] = managers
        return new

    @staticmethod
    def _patch(old: dict[str, Any], body: Any, content_type: str, subresource: str | None) -> dict[str, Any]:
        if "json-patch" in content_type:
            return dict(jsonpatch.apply_patch(old, body))
        if "strategic" in content_type:
            return dict(merge_patch(old, body, keyed_lists=True))
        return dict(merge_patch(old, body))

    def _admit(self, record: Recorded, old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
        for check in list(self.admission):
            reason = check(record, old, new)
            if reason is not None:
                return reason
        return None

    def _after_write(self, record: Recorded, obj: dict[str, Any] | None) -> None:
        for controller in list(self.controllers):
            controller(self, record, obj)

    def _list(self, res_key: ResourceKey, r: Recorded) -> aiohttp.web.Response:
        label_selector = r.query.get("labelSelector", "")
        field_selector = r.query.get("fieldSelector", "")
        try:
            requirements = selectors.parse(label_selector)
        except Exception as e:  # a real API server answers 400 for a bad selector
            return self._status(400, "BadRequest", f"unable to parse requirement: {e}")
        limit = int(r.query.get("limit") or 0)
        offset = 0
        with self.store.lock:
            rv = self.store.rv
            if r.query.get("continue"):
                token = json.loads(base64.urlsafe_b64decode(r.query["continue"]))
                offset, rv = token["offset"], token["rv"]
            # Filter the live objects and serialize only the page, under the lock: a copy of
            # every object per page would make large simulated clusters quadratic.
            matching = sorted(
                (o for (res, ns, _), o in self.store.objects.items()
                 if res == res_key and (r.namespace is None or ns == r.namespace)
                 and all(q.matches(o["metadata"].get("labels") or {}) for q in requirements)
                 and field_matches(field_selector, o)),
                key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
            page = json.loads(json.dumps(matching[offset: offset + limit] if limit else matching[offset:]))
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and offset + limit < len(matching):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"offset": offset + limit, "rv": rv}).encode()).decode()
            meta["remainingItemCount"] = len(matching) - offset - limit
        kind = _PLURAL_KIND.get(res_key[2], res_key[2].capitalize())
        api_version = f"{res_key[0]}/{res_key[1]}" if res_key[0] else res_key[1]
        return aiohttp.web.json_response({"apiVersion": api_version, "kind": f"{kind}List",
                                          "metadata": meta, "items": page})

    async def _watch(self, request: Any, r: Recorded) -> aiohttp.web.StreamResponse:
        res_key: ResourceKey = (r.group or "", r.version or "", r.resource or "")
        timeout = float(r.query.get("timeoutSeconds") or 300)
        since = r.query.get("resourceVersion")
        label_selector = r.query.get("labelSelector", "")
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def listener(resource: ResourceKey, kind: str, obj: dict[str, Any]) -> None:
            if resource == res_key:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, copy.deepcopy(obj)))

        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        r.status = 200
        with self.store.lock:
            try:
                if since and since != "0":
                    backlog = self.store.events_since(res_key, int(since))
                else:
                    backlog = [("ADDED", o) for o in self.store.items(res_key, r.namespace)]
            except GoneError as e:
                r.status = 410
                status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": str(e),
                          "reason": "Expired", "code": 410}
                await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
                return response
            self.store.listeners.append(listener)
        try:
            for kind, obj in backlog:
                if self._watch_wants(obj, r.namespace, label_selector):
                    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    kind, obj = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if self._watch_wants(obj, r.namespace, label_selector):
                    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            with self.store.lock:
                self.store.listeners.remove(listener)
        return response

    @staticmethod
    def _watch_wants(obj: dict[str, Any], namespace: str | None, label_selector: str) -> bool:
        meta = obj.get("metadata", {})
        return (namespace is None or meta.get("namespace") == namespace) and selectors.matches(
            label_selector, meta.get("labels"))


def iter_records(records: list[Recorded]) -> Iterator[Recorded]:
    yield from list(records)
