"""The simulated API server's request log: each request as recorded in RBAC terms, and the Status
body a refused request gets back.

Test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp.web


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


def verb_of(r: Recorded) -> str:
    if r.method == "GET":
        return "watch" if r.query.get("watch") in ("true", "1") else ("get" if r.name else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(r.method, r.method.lower())


def status_response(code: int, reason: str, message: str,
                    headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return aiohttp.web.json_response(body, status=code, headers=headers)


def iter_records(records: list[Recorded]) -> Iterator[Recorded]:
    yield from list(records)
