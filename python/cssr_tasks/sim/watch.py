"""Watch requests on the simulated API server: the backlog from a resourceVersion (or 410 Gone once
compacted), then live events until the timeout.

Test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import aiohttp.web

from .. import selectors
from .records import Recorded
from .store import GoneError, ResourceKey, Store


async def watch_response(store: Store, request: Any, r: Recorded) -> aiohttp.web.StreamResponse:
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
    with store.lock:
        try:
            if since and since != "0":
                backlog = store.events_since(res_key, int(since))
            else:
                backlog = [("ADDED", o) for o in store.items(res_key, r.namespace)]
        except GoneError as e:
            r.status = 410
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": str(e),
                      "reason": "Expired", "code": 410}
            await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            return response
        store.listeners.append(listener)
    try:
        for kind, obj in backlog:
            if _wants(obj, r.namespace, label_selector):
                await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                kind, obj = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            if _wants(obj, r.namespace, label_selector):
                await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        with store.lock:
            store.listeners.remove(listener)
    return response


def _wants(obj: dict[str, Any], namespace: str | None, label_selector: str) -> bool:
    meta = obj.get("metadata", {})
    return (namespace is None or meta.get("namespace") == namespace) and selectors.matches(
        label_selector, meta.get("labels"))
