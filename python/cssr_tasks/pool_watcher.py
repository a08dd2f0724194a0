"""The pool watcher's loop: list and watch pools and nodes, decide (pool_events), send, record.

Two threads keep caches of MachineConfigPools and Nodes from a list and a watch that resumes at
its resourceVersion and relists on 410 Gone; the loop re-decides every selected pool on each
change and at every resync, and hands each event to a sender (watch_pools.EventListener).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Protocol, cast

from . import kernels
from .cluster import Cluster, resource_path
from .errors import ApiError, CssrError, Forbidden, NotFound
from .log import Log
from .pool_events import (
    KERNEL_CHANGED,
    Event,
    State,
    assess,
    condition,
    configs_of,
    deployed_sets,
    node_kernel,
    pool_nodes,
    sent_records,
    settled,
    timestamp,
)
from .watch_metrics import Metrics
from .watch_params import EVENT_ID_LABEL, EVENTLISTENER, KEY_LABEL, MCO_API, TEKTON_API, Params
from .watch_state import StateStore

# The shortest time between two lists or watches of one resource, whatever the server does.
MIN_ROUND_SECONDS = 1.0


class Sender(Protocol):
    def send(self, event: Event) -> str:
        """Deliver the event; the eventID the EventListener answered with."""
        ...


@dataclass
class Stats:
    watch_events: int = 0
    relists: int = 0
    reconciles: int = 0
    posts_accepted: int = 0
    posts_failed: int = 0
    recovered: int = 0


class Watcher:
    """Caches pools and nodes from two watches; each change (or a resync) re-decides every
    selected pool, and sends what the decision calls for."""

    def __init__(self, params: Params, *, cluster: Cluster, log: Log, sender: Sender,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.params, self.cluster, self.log, self.sender, self.clock = params, cluster, log, sender, clock
        self.state = StateStore(cluster, params.namespace, params.state_configmap, log)
        self.pools: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}  # rendered MachineConfigs are immutable
        self.deploy_state: dict[str, str] | None = None
        self.unrecorded: dict[str, dict[str, Any]] = {}  # accepted, but the ConfigMap write failed
        self.not_before: dict[str, float] = {}  # event key -> when a failed delivery is tried again
        self.lock = threading.Lock()
        self.dirty = threading.Event()
        self.stopping = threading.Event()
        self.synced: set[str] = set()
        self.heartbeat: dict[str, float] = {}
        self.reconciled: dict[str, str] = {}  # resource -> resourceVersion the last reconcile saw
        self.observed: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.last_resync = 0.0
        self.loaded = False
        self.confirm_enabled = params.confirm_seconds > 0
        self.stats = Stats()
        self.threads: list[threading.Thread] = []
        self.loop_tick = clock()
        self.metrics = Metrics(self)

    # -- decisions --

    def decide(self, pool: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
               rendered_configs: Mapping[str, Mapping[str, Any] | None], state: State) -> list[Event]:
        if pool["metadata"]["name"] not in self.params.pools:
            return []
        return assess(pool, nodes, rendered_configs, state).events

    def current_state(self) -> State:
        sent = sent_records(self.state.data)
        sent.update(self.unrecorded)
        return State(sent=sent, deployed=deployed_sets(self.params.pools, self.deploy_state, self.state.data))

    # -- lifecycle --

    def start(self) -> Watcher:
        """Run in background threads (tests, the benchmark); `run` blocks instead."""
        thread = threading.Thread(target=self.run, name="watch-pools", daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def stop(self, timeout: float = 30) -> None:
        self.stopping.set()
        self.dirty.set()
        for thread in self.threads:
            thread.join(timeout)

    def run(self) -> None:
        p = self.params
        self.log.info(f"watching pools {', '.join(p.pools)}; events go to {p.url}; state in ConfigMap "
                      f"{p.namespace}/{p.state_configmap}; deployments read from "
                      f"{p.pipeline_namespace}/{p.deploy_state_configmap}")
        for api_version, plural, cache in ((MCO_API, "machineconfigpools", self.pools), ("v1", "nodes", self.nodes)):
            thread = threading.Thread(target=self.watch_forever, args=(api_version, plural, cache),
                                      name=f"watch-{plural}", daemon=True)
            thread.start()
            self.threads.append(thread)
        while not self.stopping.is_set():
            self.loop_tick = self.clock()
            self.dirty.wait(timeout=p.resync_seconds)
            self.dirty.clear()
            if self.stopping.is_set():
                break
            try:
                if not self.loaded:
                    # Never decide before knowing what was already sent: that is how duplicates happen.
                    self.state.load()
                    self.refresh_deploy_state()
                    self.metrics.refresh_runs(self.cluster, p.pipeline_namespace, self.log)
                    self.loaded = True
                    self.last_resync = self.clock()
                    self.log.info(f"state: {len(sent_records(self.state.data))} event(s) already sent")
                if {"machineconfigpools", "nodes"} <= self.synced:
                    self.reconcile()
            except CssrError as e:  # the cluster failed us: say so, and decide again later
                self.metrics.sync_failed()
                self.log.warn(f"could not finish deciding: {e}; trying again within {p.resync_seconds}s")
        self.log.info("stopped")

    def alive(self) -> bool:
        now = self.clock()
        stale = self.params.watch_timeout_seconds + 60
        watches = all(r in self.heartbeat and now - self.heartbeat[r] < stale for r in ("machineconfigpools", "nodes"))
        return watches and not self.stopping.is_set() and now - self.loop_tick < self.params.resync_seconds * 3 + 30

    def ready(self) -> bool:
        return self.loaded and {"machineconfigpools", "nodes"} <= self.synced

    # -- list and watch --

    def relist(self, api_version: str, plural: str) -> tuple[list[dict[str, Any]], str]:
        """Every object and the list's resourceVersion, where a watch resumes."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        version = ""
        while True:
            page = self.cluster.request("GET", resource_path(api_version, plural),
                                        query={"limit": 500, "continue": token}, what=f"list {plural}")
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                return items, version

    def watch_forever(self, api_version: str, plural: str, cache: dict[str, dict[str, Any]]) -> None:
        version: str | None = None
        failures = 0
        round_started = -MIN_ROUND_SECONDS
        while not self.stopping.is_set():
            # A server that ends every watch at once, or answers 410 to every list, must not turn
            # this loop into a flood of requests: one list or watch per MIN_ROUND_SECONDS at most.
            pause = round_started + MIN_ROUND_SECONDS - self.clock()
            if pause > 0 and self.stopping.wait(pause):
                break
            round_started = self.clock()
            try:
                if version is None:
                    items, version = self.relist(api_version, plural)
                    with self.lock:
                        old = dict(cache)
                        cache.clear()
                        cache.update({o["metadata"]["name"]: o for o in items})
                    for obj in items:
                        self.saw("ADDED" if obj["metadata"]["name"] not in old else "MODIFIED",
                                 plural, old.get(obj["metadata"]["name"]), obj, quiet=plural == "nodes")
                    self.stats.relists += 1
                    self.observed[plural] = version
                    self.synced.add(plural)
                    self.log.info(f"listed {len(items)} {plural} at resourceVersion {version}")
                    self.dirty.set()
                self.heartbeat[plural] = self.clock()
                stream = cast(Generator[tuple[str, dict[str, Any]], None, None], self.cluster.watch(
                    api_version, plural, resource_version=version, timeout_seconds=self.params.watch_timeout_seconds))
                with closing(stream):
                    for kind, obj in stream:
                        self.heartbeat[plural] = self.clock()
                        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                        if kind != "BOOKMARK":
                            self.apply(kind, plural, cache, obj)
                        self.observed[plural] = version
                        if self.stopping.is_set():
                            break
                self.heartbeat[plural] = self.clock()
                failures = 0
                if not self.stopping.is_set():
                    self.metrics.watch_restarted(plural, "ended")
            except (CssrError, ValueError) as e:  # ValueError: a line of the stream that is not JSON
                if isinstance(e, ApiError) and e.status == 410:
                    self.metrics.watch_restarted(plural, "expired")
                    self.log.info(f"watch of {plural} expired at resourceVersion {version} (410 Gone); relisting")
                    version = None
                    continue
                failures += 1
                self.metrics.watch_restarted(plural, "error")
                wait = min(30.0, 0.5 * 2 ** min(failures, 6))
                self.log.warn(f"watch of {plural} failed: {e}; retrying in {wait:.0f}s")
                self.stopping.wait(wait)

    def apply(self, kind: str, plural: str, cache: dict[str, dict[str, Any]], obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self.lock:
            old = cache.get(name)
            if kind == "DELETED":
                cache.pop(name, None)
            else:
                cache[name] = obj
        self.stats.watch_events += 1
        self.saw(kind, plural, old, obj)
        self.dirty.set()

    def saw(self, kind: str, plural: str, old: Mapping[str, Any] | None, new: Mapping[str, Any],
            quiet: bool = False) -> None:
        """Log what changed that matters: a pool's configs, counts and conditions; a node's kernel."""
        name = new["metadata"]["name"]
        if plural == "machineconfigpools":
            summary = _pool_summary(new)
            if kind == "DELETED":
                self.log.info(f"pool {name} deleted")
            elif old is None or _pool_summary(old) != summary:
                self.log.info(f"pool {name}: {summary}")
        elif not quiet:
            before = node_kernel(old) if old else ""
            after = node_kernel(new)
            if kind == "DELETED":
                self.log.info(f"node {name} deleted")
            elif before != after:
                self.log.info(f"node {name} runs kernel {after}" + (f" (was {before})" if before else ""))
        self.log.debug(f"seen {kind} {plural} {name} at resourceVersion {new['metadata'].get('resourceVersion')}")

    # -- deciding and sending --

    def rendered(self, name: str) -> dict[str, Any] | None:
        if not name:
            return None
        if name not in self.configs:
            found = self.cluster.get_or_none(MCO_API, "machineconfigs", name)
            if found is None:
                return None
            self.configs[name] = {"spec": {k: (found.get("spec") or {}).get(k) for k in ("osImageURL", "kernelType")}}
        return self.configs[name]

    def refresh_deploy_state(self) -> None:
        p = self.params
        try:
            found = self.cluster.get_or_none("v1", "configmaps", p.deploy_state_configmap, p.pipeline_namespace)
        except Forbidden as e:
            self.log.warn(f"cannot read the last deployment: {e}; give the watcher get on that ConfigMap")
            found = None
        data = dict((found or {}).get("data") or {}) if found else None
        if data != self.deploy_state:
            described = ", ".join(f"{k}={v}" for k, v in sorted(data.items()) if "kernel-set-id" in k) if data else ""
            self.log.info(f"last deployment: {described or 'none recorded'}")
        self.deploy_state = data

    def reconcile(self) -> None:
        with self.lock:
            pools = {name: pool for name, pool in self.pools.items()}
            nodes = list(self.nodes.values())
            observed = dict(self.observed)
        if self.clock() - self.last_resync >= self.params.resync_seconds:
            # Periodically reread what others write: a deleted state key re-sends its event.
            self.last_resync = self.clock()
            self.state.load()
            self.refresh_deploy_state()
            self.metrics.refresh_runs(self.cluster, self.params.pipeline_namespace, self.log)
        self.retry_unrecorded()
        for name in self.params.pools:
            pool = pools.get(name)
            if pool is None:
                self.explain(name, "not found; waiting for it to exist")
                continue
            current, target = configs_of(pool)
            configs = {c: self.rendered(c) for c in {current, target} if c}
            assessment = assess(pool, nodes, configs, self.current_state())
            if any(e.type == KERNEL_CHANGED for e in assessment.events):
                self.refresh_deploy_state()  # the pipeline may have just recorded this very set
                assessment = assess(pool, nodes, configs, self.current_state())
            self.explain(name, assessment.reason)
            for event in assessment.events:
                self.deliver(event)
            self.record_baseline(pool, nodes)
        self.stats.reconciles += 1
        self.metrics.synced()
        self.reconciled = observed

    def explain(self, pool: str, reason: str) -> None:
        if self.reasons.get(pool) != reason:
            self.reasons[pool] = reason
            self.log.info(f"pool {pool}: {reason}")

    def record_baseline(self, pool: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> None:
        """With no deployment recorded, remember the set first seen settled, so that the next
        kernel change is noticed even if the pipeline never recorded one."""
        name = pool["metadata"]["name"]
        if name in self.current_state().deployed:
            return
        members = pool_nodes(pool, nodes)
        if settled(pool, members) is not None:
            return
        running = kernels.kernel_set(node_kernel(n) for n in members)
        baseline = {"kernelVersions": running, "kernelSetId": kernels.kernel_set_id(running),
                    "config": configs_of(pool)[0], "recordedAt": timestamp()}
        self.state.update({f"baseline.{name}": json.dumps(baseline, sort_keys=True)})
        self.log.info(f"pool {name}: no deployment recorded; baseline kernel set {baseline['kernelSetId']} "
                      f"({', '.join(running)})")

    def deliver(self, event: Event) -> None:
        if self.clock() < self.not_before.get(event.key, 0.0):
            return  # failed a moment ago; the backoff between passes keeps the loop responsive
        existing = self.pipelinerun_for(event)
        if existing is not None:
            # A send before a crash or restart made it, but its record did not: record it now.
            meta = existing.get("metadata") or {}
            self.log.info(f"PipelineRun {meta.get('name')} already carries idempotency key "
                          f"{event.idempotency_key} ({event.describe()}); recording it instead of sending again")
            self.stats.recovered += 1
            self.metrics.event_recovered(event)
            self.remember(event, str((meta.get("labels") or {}).get(EVENT_ID_LABEL, "")))
            return
        self.log.info(f"sending {event.describe()}; idempotency key {event.idempotency_key}")
        self.metrics.event_sent(event)
        try:
            event_id = self.sender.send(event)
        except CssrError as e:
            self.stats.posts_failed += 1
            self.metrics.event_rejected(event, e)
            self.not_before[event.key] = self.clock() + self.params.resync_seconds
            self.log.warn(f"{e}; the event stays pending and is sent again within {self.params.resync_seconds}s")
            return
        self.stats.posts_accepted += 1
        self.metrics.event_accepted(event)
        self.not_before.pop(event.key, None)
        self.log.info(f"the EventListener accepted {event.type} for pool {event.pool} (202, eventID {event_id})")
        self.remember(event, event_id)
        self.confirm(event, event_id)

    def remember(self, event: Event, event_id: str) -> None:
        record = {"pool": event.pool, "type": event.type, "config": event.target_config, "kernel": event.kernel,
                  "idempotencyKey": event.idempotency_key, "eventID": event_id, "sentAt": timestamp(),
                  "kernelSetId": event.kernel_set_id}
        self.unrecorded[event.key] = record
        self.retry_unrecorded()

    def retry_unrecorded(self) -> None:
        if not self.unrecorded:
            return
        changes = {key: json.dumps(record, sort_keys=True) for key, record in self.unrecorded.items()}
        try:
            self.state.update(changes)
        except CssrError as e:
            # Kept in memory, so this process never sends it again; a restart before the write
            # lands finds the PipelineRun by its idempotency key instead.
            self.log.warn(f"could not record {len(changes)} sent event(s): {e}; retrying at the next pass")
            return
        for key in changes:
            self.log.info(f"recorded {key} in ConfigMap {self.params.namespace}/{self.params.state_configmap}")
            self.unrecorded.pop(key, None)

    def pipelinerun_for(self, event: Event) -> dict[str, Any] | None:
        found = self.pipelineruns(f"{KEY_LABEL}={event.idempotency_key}")
        return found[0] if found else None

    def pipelineruns(self, selector: str) -> list[dict[str, Any]]:
        if not self.confirm_enabled:
            return []
        try:
            return self.cluster.list(TEKTON_API, "pipelineruns", namespace=self.params.pipeline_namespace,
                                     label_selector=selector)
        except (Forbidden, NotFound) as e:
            self.confirm_enabled = False
            self.log.warn(f"cannot list PipelineRuns ({e}); not confirming deliveries from now on. Grant list on "
                          "pipelineruns, or set confirm-seconds=0 to silence this")
            return []

    def confirm(self, event: Event, event_id: str) -> None:
        """A 202 does not mean a PipelineRun was made (tektoncd/triggers#1465, #931): look for it."""
        if not self.confirm_enabled or not event_id:
            return
        deadline = self.clock() + self.params.confirm_seconds
        wait = 0.2
        while True:
            found = self.pipelineruns(f"{EVENT_ID_LABEL}={event_id}")
            if found:
                self.log.info(f"PipelineRun {found[0]['metadata']['name']} started for {event.type} of pool "
                              f"{event.pool} (eventID {event_id})")
                return
            if self.clock() >= deadline or not self.confirm_enabled or self.stopping.is_set():
                break
            self.stopping.wait(wait)
            wait = min(wait * 2, 2.0)
        if self.confirm_enabled and not self.stopping.is_set():
            self.metrics.event_unconfirmed(event)
        self.log.warn(f"no PipelineRun appeared within {self.params.confirm_seconds}s for eventID {event_id} "
                      f"({event.describe()}): the EventListener's filter rejected the event or its template "
                      f"failed; read `oc logs deploy/el-{EVENTLISTENER}`. The event counts as delivered; to send it "
                      f"again, delete key {event.key} from ConfigMap {self.params.state_configmap}")


def _pool_summary(pool: Mapping[str, Any]) -> str:
    current, target = configs_of(pool)
    status = pool.get("status") or {}
    conditions = ", ".join(f"{k}={condition(pool, k)}" for k in ("Updated", "Updating", "Degraded"))
    configs = current if current == target else f"{current} -> {target}"
    return (f"{configs}, {status.get('updatedMachineCount', '?')}/{status.get('machineCount', '?')} updated, "
            f"{conditions}")
