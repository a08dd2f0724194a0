"""What the pool watcher writes on the cluster: its state ConfigMap and the shared trigger Secret."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

from .cluster import Cluster
from .errors import ApiError, Conflict, NotFound
from .log import Log
from .pool_events import prune
from .watch_params import SECRET_KEY, SECRET_NAME


class StateStore:
    """The watcher's ConfigMap: sent events and baselines, written with optimistic concurrency."""

    def __init__(self, cluster: Cluster, namespace: str, name: str, log: Log) -> None:
        self.cluster, self.namespace, self.name, self.log = cluster, namespace, name, log
        self.data: dict[str, str] = {}
        self.resource_version: str | None = None

    def load(self) -> dict[str, str]:
        found = self.cluster.get_or_none("v1", "configmaps", self.name, self.namespace)
        self.data = dict((found or {}).get("data") or {})
        self.resource_version = ((found or {}).get("metadata") or {}).get("resourceVersion")
        return self.data

    def update(self, changes: Mapping[str, str]) -> None:
        for attempt in range(1, 11):
            data = prune({**self.data, **changes})
            obj: dict[str, Any] = {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/name": "cssr-watch-pools",
                                        "app.kubernetes.io/part-of": "cssr-deploy"}},
                "data": data,
            }
            try:
                if self.resource_version is None:
                    stored = self.cluster.create(obj)
                else:
                    obj["metadata"]["resourceVersion"] = self.resource_version
                    stored = self.cluster.replace(obj)
            except (Conflict, NotFound) as e:
                # Someone else wrote (or deleted) it: reread and merge our changes again.
                self.log.info(f"state ConfigMap {self.namespace}/{self.name} changed under us "
                              f"({e.status}, attempt {attempt}/10); rereading it")
                self.load()
                continue
            self.data = dict(stored.get("data") or {})
            self.resource_version = (stored.get("metadata") or {}).get("resourceVersion")
            return
        raise ApiError(f"could not update ConfigMap {self.namespace}/{self.name}: 10 conflicts in a row; "
                       "run one watcher only (replicas: 1)", status=409)


def create_secret(cluster: Cluster, namespace: str, log: Log, *, rotate: bool = False) -> bool:
    """Create the shared Secret with a random token (never printed); True when it was written."""
    existing = cluster.get_or_none("v1", "secrets", SECRET_NAME, namespace)
    if existing is not None and not rotate:
        log.info(f"Secret {namespace}/{SECRET_NAME} exists; left as it is (pass --rotate to replace its token)")
        return False
    token = secrets.token_hex(32)
    obj: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "cssr-deploy"}},
        "data": {SECRET_KEY: base64.b64encode(token.encode()).decode()},
    }
    if existing is None:
        cluster.create(obj)
        log.info(f"created Secret {namespace}/{SECRET_NAME} with a random 256-bit token")
    else:
        obj["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
        cluster.replace(obj)
        log.info(f"rotated the token of Secret {namespace}/{SECRET_NAME}; the watcher rereads it at its next send")
    return True
