"""How the simulated API server computes an object's new state from a write: merge patches, JSON
patches, server-side apply (approximated) and PUT of the object or its status subresource.

Test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch


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


def subresource_write(old: dict[str, Any], body: Any, subresource: str | None, replace: bool) -> dict[str, Any]:
    if subresource == "status":
        new = copy.deepcopy(old)
        new["status"] = (body or {}).get("status", {})
        return new
    new = copy.deepcopy(body)
    if old.get("status") is not None and "status" not in new:
        new["status"] = old["status"]
    return new


def apply_config(old: dict[str, Any] | None, config: dict[str, Any], manager: str) -> dict[str, Any]:
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


def patch_object(old: dict[str, Any], body: Any, content_type: str, subresource: str | None) -> dict[str, Any]:
    if "json-patch" in content_type:
        return dict(jsonpatch.apply_patch(old, body))
    if "strategic" in content_type:
        return dict(merge_patch(old, body, keyed_lists=True))
    return dict(merge_patch(old, body))
