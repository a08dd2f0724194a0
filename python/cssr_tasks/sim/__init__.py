"""A simulated OpenShift API for tests and `make demo`: kmock's emulator in a background thread.

    sim = SimulatedCluster.with_default_cluster().start()
    cluster = Cluster.at(sim.url)
    ...
    sim.writes()     # every request that changed state, in order
    sim.stop()

The steps under test talk to it with the real `kubernetes` client over HTTP; nothing of the
client is replaced. kmock and aiohttp are an optional extra (`cssr-tasks[sim]`), never part of
the tasks image.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kmock
import yaml

from ..cluster import KINDS
from .server import Emulator, Fault, ObjectKey, Recorded, Store

__all__ = ["Fault", "Recorded", "SimulatedCluster", "key_of"]


def key_of(obj: dict[str, Any]) -> ObjectKey:
    api_version = obj["apiVersion"]
    group, _, version = api_version.rpartition("/")
    plural, namespaced = KINDS[obj["kind"]]
    meta = obj.get("metadata") or {}
    return ((group, version, plural), meta.get("namespace") if namespaced else None, meta["name"])


class SimulatedCluster:
    def __init__(self, objects: Iterable[dict[str, Any]] = ()) -> None:
        self.emulator = Emulator()
        self.store: Store = self.emulator.store
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="simulated-openshift", daemon=True)
        self._startup_error: BaseException | None = None
        self.load(objects)

    @classmethod
    def with_default_cluster(cls) -> SimulatedCluster:
        from . import fixtures

        return cls(fixtures.default_cluster())

    # -- lifecycle ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # surfaced by start()
            self._startup_error = e
            self._ready.set()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self.emulator.loop = asyncio.get_running_loop()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopping.wait()

    def start(self) -> SimulatedCluster:
        self._thread.start()
        if not self._ready.wait(15) or self._startup_error is not None:
            raise RuntimeError(f"the simulated cluster did not start: {self._startup_error}")
        return self

    def stop(self) -> None:
        if self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    def __enter__(self) -> SimulatedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ----------------------------------------------------------------------------

    def load(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object, as a controller or an admin would (not recorded as a request)."""
        stored, _ = self.store.put(key_of(obj), obj)
        return stored

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.store.get(key_of({"apiVersion": api_version, "kind": kind,
                                      "metadata": {"name": name, "namespace": namespace}}))

    def patch_status(self, api_version: str, kind: str, name: str, status: dict[str, Any],
                     namespace: str | None = None) -> dict[str, Any]:
        obj = self.get(api_version, kind, name, namespace)
        if obj is None:
            raise KeyError(f"{kind} {namespace}/{name} is not in the simulated cluster")
        obj["status"] = {**(obj.get("status") or {}), **status}
        return self.put(obj)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        self.store.delete(key_of({"apiVersion": api_version, "kind": kind,
                                  "metadata": {"name": name, "namespace": namespace}}))

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        group, _, version = api_version.rpartition("/")
        return self.store.items((group, version, KINDS[kind][0]), namespace)

    # -- requests -------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self.store.lock:
            return list(self.emulator.requests_log)

    def writes(self) -> list[Recorded]:
        """Requests that changed stored state (a no-op apply is not one)."""
        return [r for r in self.requests if r.wrote]

    def clear_requests(self) -> None:
        with self.store.lock:
            self.emulator.requests_log.clear()

    def fail(self, method: str, path_contains: str, status: int, times: int = 1,
             headers: dict[str, str] | None = None, *, after: bool = False) -> None:
        """The next `times` matching requests get `status` (for retry and outage tests); with `after`, each is
        served first and only its answer is replaced (a write that happened but whose response was lost)."""
        with self.store.lock:
            self.emulator.faults.append(Fault(method, path_contains, status, times, headers or {}, after))

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "simulated",
            "clusters": [{"name": "simulated", "cluster": {"server": self.url}}],
            "users": [{"name": "simulated", "user": {"token": "simulated"}}],
            "contexts": [{"name": "simulated", "context": {"cluster": "simulated", "user": "simulated"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path
