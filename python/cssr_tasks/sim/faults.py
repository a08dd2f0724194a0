"""Faults injected into the simulated API server: a status code for matching requests, before or after serving.

Test and demo machinery: nothing here runs against a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import Recorded


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    after: bool = False  # serve the request first, then lose its answer (a write that happened, seen failing)


def take_fault(faults: list[Fault], r: Recorded) -> Fault | None:
    """The first armed fault matching the request, with one use of it spent. The caller holds the store lock."""
    for fault in faults:
        if fault.times and fault.method in (r.method, "*") and fault.path_contains in r.path:
            fault.times -= 1
            return fault
    return None
