"""List requests on the simulated API server: label and field selectors, and paging with continue tokens.

Test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp.web

from .. import selectors
from ..cluster import KINDS
from .records import Recorded, status_response
from .store import ResourceKey, Store

_PLURAL_KIND = {plural: kind for kind, (plural, _) in KINDS.items()}


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


def list_response(store: Store, res_key: ResourceKey, r: Recorded) -> aiohttp.web.Response:
    label_selector = r.query.get("labelSelector", "")
    field_selector = r.query.get("fieldSelector", "")
    try:
        requirements = selectors.parse(label_selector)
    except Exception as e:  # a real API server answers 400 for a bad selector
        return status_response(400, "BadRequest", f"unable to parse requirement: {e}")
    limit = int(r.query.get("limit") or 0)
    offset = 0
    with store.lock:
        rv = store.rv
        if r.query.get("continue"):
            token = json.loads(base64.urlsafe_b64decode(r.query["continue"]))
            offset, rv = token["offset"], token["rv"]
        # Filter the live objects and serialize only the page, under the lock: a copy of
        # every object per page would make large simulated clusters quadratic.
        matching = sorted(
            (o for (res, ns, _), o in store.objects.items()
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
