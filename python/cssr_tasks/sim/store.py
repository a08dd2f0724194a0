"""The simulated API server's object store: objects by key, resourceVersions and the event history watches read.

Test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

ResourceKey = tuple[str, str, str]  # (group, version, plural)
ObjectKey = tuple[ResourceKey, str | None, str]  # (resource, namespace, name)


class GoneError(Exception):
    pass


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
