"""kmock's Kubernetes emulator, with the API-server behaviour our steps rely on filled in.

kmock parses requests, serves discovery and runs the HTTP server. Where it falls short of a
real API server (label and field selectors, pagination, server-side apply that creates, PUT,
resourceVersion and optimistic concurrency, watch resumption with 410 Gone, list kinds, pods/log), the
emulator below implements the behaviour itself, over its own thread-safe store (store.py), with
listing (listing.py), watch (watch.py), writes (patches.py), faults (faults.py) and the request log
(records.py) each in its own module. Every request
is recorded, so that tests and the RBAC check can read what a step asked of the cluster.

This is test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from ..cluster import KINDS
from .faults import Fault, take_fault
from .listing import field_matches, list_response
from .patches import apply_config, merge_patch, patch_object, subresource_write
from .records import Recorded, iter_records, status_response, verb_of
from .store import GoneError, ObjectKey, ResourceKey, Store
from .watch import watch_response

# The names importers have always taken from here.
__all__ = ["Emulator", "Fault", "GoneError", "ObjectKey", "Recorded", "ResourceKey", "Store", "field_matches",
           "iter_records", "merge_patch"]

_NAMESPACED = {plural: namespaced for _, (plural, namespaced) in KINDS.items()}
# kmock reads /api/v1/namespaces/<x> as "namespace <x>" and fails on /api/v1/namespaces: the emulator
# routes the Namespace resource itself.
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?")


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
        record.verb = verb_of(record)
        with self.store.lock:
            self.requests_log.append(record)
        fault = self._fault(record)
        if fault is not None and not fault.after:
            record.status = fault.status
            return status_response(fault.status, "Injected fault", f"injected {fault.status}", headers=fault.headers)
        try:
            if record.verb == "watch":
                return await watch_response(self.store, request, record)
            response = self._serve(request, record)
        except GoneError as e:
            record.status = 410
            return status_response(410, "Expired", str(e))
        record.status = response.status
        if fault is not None:  # after: the request was served, its answer is lost
            record.status = fault.status
            return status_response(fault.status, "Injected fault", f"injected {fault.status}", headers=fault.headers)
        return response

    def _fault(self, r: Recorded) -> Fault | None:
        with self.store.lock:
            return take_fault(self.faults, r)

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
            return list_response(self.store, res_key, r)
        body = self._body(request, r) if r.method in ("POST", "PUT", "PATCH") else None
        if r.verb == "create":
            if not isinstance(body, dict):
                return status_response(400, "BadRequest", "the body is not an object")
            key = self._key(request, name=(body.get("metadata") or {}).get("name"),
                            namespace=request.namespace or (body.get("metadata") or {}).get("namespace"))
            if not key[2]:
                return status_response(422, "Invalid", "metadata.name is required")
            with self.store.lock:
                if self.store.get(key) is not None:
                    return status_response(409, "AlreadyExists", f'{r.resource} "{key[2]}" already exists')
                if (reason := self._admit(r, None, body)) is not None:
                    return status_response(422, "Invalid", reason)
                obj, r.wrote = self.store.put(key, body)
                self._after_write(r, obj)
            return aiohttp.web.json_response(obj, status=201)
        key = self._key(request)
        if r.verb == "get" and r.resource == "pods" and r.subresource == "log":
            return self._log(key, r)
        if r.verb == "get":
            found = self.store.get(key)
            if found is None:
                return status_response(404, "NotFound", f'{r.resource} "{key[2]}" not found')
            return aiohttp.web.json_response(found)
        if r.verb == "delete":
            with self.store.lock:
                deleted = self.store.delete(key)
                if deleted is None:
                    return status_response(404, "NotFound", f'{r.resource} "{key[2]}" not found')
                r.wrote = True
                self._after_write(r, None)
            return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if r.verb == "update":
            with self.store.lock:
                old = self.store.get(key)
                if old is None:
                    return status_response(404, "NotFound", f'{r.resource} "{key[2]}" not found')
                wanted_rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
                if wanted_rv and wanted_rv != old["metadata"].get("resourceVersion"):
                    return status_response(409, "Conflict", "the object has been modified; please apply your "
                                                             "changes to the latest version and try again")
                new = subresource_write(old, body, r.subresource, replace=True)
                if (reason := self._admit(r, old, new)) is not None:
                    return status_response(422, "Invalid", reason)
                obj, r.wrote = self.store.put(key, new)
                self._after_write(r, obj)
            return aiohttp.web.json_response(obj)
        if r.verb == "patch":
            with self.store.lock:
                old = self.store.get(key)
                if "apply-patch" in r.content_type:
                    if not isinstance(body, dict):
                        return status_response(400, "BadRequest", "the applied configuration is not an object")
                    new = apply_config(old, body, r.query.get("fieldManager", ""))
                    status = 201 if old is None else 200
                elif old is None:
                    return status_response(404, "NotFound", f'{r.resource} "{key[2]}" not found')
                else:
                    new = patch_object(old, body, r.content_type, r.subresource)
                    status = 200
                if (reason := self._admit(r, old, new)) is not None:
                    return status_response(422, "Invalid", reason)
                if r.query.get("dryRun"):
                    return aiohttp.web.json_response(new, status=status)
                obj, r.wrote = self.store.put(key, new)
                if r.wrote:
                    self._after_write(r, obj)
            return aiohttp.web.json_response(obj, status=status)
        return status_response(405, "MethodNotAllowed", f"{r.method} is not supported here")

    def _log(self, key: ObjectKey, r: Recorded) -> aiohttp.web.Response:
        """pods/log: text/plain, with the API server's errors for a missing pod or container."""
        pod = self.store.get(key)
        if pod is None:
            return status_response(404, "NotFound", f'pods "{key[2]}" not found')
        names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        container = r.query.get("container") or (names[0] if len(names) == 1 else "")
        if not container:
            return status_response(400, "BadRequest", f"a container name must be specified for pod {key[2]}, "
                                                      f"choose one of: {names}")
        if container not in names:
            return status_response(400, "BadRequest", f"container {container} is not valid for pod {key[2]}")
        text = self.logs.get((key[1] or "", key[2], container))
        if text is None:
            return status_response(400, "BadRequest", f'container "{container}" in pod "{key[2]}" is waiting to '
                                                      "start: ContainerCreating")
        return aiohttp.web.Response(text=text, content_type="text/plain")

    def _admit(self, record: Recorded, old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
        for check in list(self.admission):
            reason = check(record, old, new)
            if reason is not None:
                return reason
        return None

    def _after_write(self, record: Recorded, obj: dict[str, Any] | None) -> None:
        for controller in list(self.controllers):
            controller(self, record, obj)
