"""The pool watcher's Prometheus metrics (prometheus_client), served at /metrics on the health port.

Counters say what the watcher sent and how the EventListener answered, how its watches restart
and whether its decision passes finish. Two gauges join what only the watcher holds together:

- `cssr_node_kernel_verified`: per node of a watched pool, 1 when the kernel it runs is in the
  kernel set of the last good cssr-deploy run (ConfigMap cssr-deploy-state, written by the report
  task only after build-kmods and verify-kmods passed), else 0. kube-state-metrics exports the
  nodes' kernels, but no exporter turns a ConfigMap's data into samples; the watcher already
  watches the nodes and reads that ConfigMap, so the join costs no request.
- `cssr_deploy_last_run_failed`: 1 when the newest finished cssr-deploy PipelineRun failed (read
  from the runs themselves, at each resync). cssr-deploy-state records good runs only, and
  Tekton's controller metrics count runs (no "the last one failed"), live in the Pipelines
  operator's namespace and change names and labels with its observability config.

docs/monitoring.md lists every metric and the alerts of deploy/monitoring.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from .cluster import Cluster
from .errors import ApiError, ConfigError, CssrError, Forbidden, NotFound
from .log import Log
from .pool_events import Event, deployed_sets, node_kernel, pool_nodes
from .watch_params import TEKTON_API, Params

PIPELINE = "cssr-deploy"
# Tekton's controller labels every PipelineRun with the name of the Pipeline it runs
# (tektoncd/pipeline, pkg/reconciler/pipelinerun: labels[pipeline.PipelineLabelKey]).
PIPELINE_LABEL = "tekton.dev/pipeline"


class Watched(Protocol):
    """What the coverage gauge reads from the watcher, under its lock, at each scrape."""

    params: Params
    pools: dict[str, dict[str, Any]]
    nodes: dict[str, dict[str, Any]]
    deploy_state: dict[str, str] | None
    lock: threading.Lock


@dataclass(frozen=True)
class Coverage:
    node: str
    pool: str
    kernel: str
    verified: bool


@dataclass(frozen=True)
class LastRun:
    name: str
    reason: str
    failed: bool
    completed: float  # seconds since the epoch


def coverage(pools: Iterable[str], pool_objects: Mapping[str, Mapping[str, Any]],
             nodes: list[Mapping[str, Any]], deploy_state: Mapping[str, str] | None) -> list[Coverage]:
    """Per node of each watched pool: does the last good run's kernel set hold its kernel?

    Only cssr-deploy-state counts: the watcher's own baseline is what it saw running, not
    what was built and verified."""
    deployed = deployed_sets(list(pools), deploy_state, {})
    found = []
    for pool in pools:
        obj = pool_objects.get(pool)
        if obj is None:
            continue
        members = pool_nodes(obj, nodes)
        running = [node_kernel(n) for n in members]
        kernel_set = deployed.get(pool)
        for node, kernel in zip(members, running, strict=True):
            if kernel_set is None or not kernel:
                verified = False
            elif kernel_set.versions is not None:
                verified = kernel in kernel_set.versions
            else:  # only the id recorded: the pool's whole set must be it
                verified = kernel_set.covers(running)
            found.append(Coverage(str(node["metadata"]["name"]), pool, kernel, verified))
    return found


def last_run(runs: Iterable[Mapping[str, Any]]) -> LastRun | None:
    """The newest finished run, by completion time; runs still going are not judged yet."""
    finished = []
    for run in runs:
        status = run.get("status") or {}
        succeeded = next((c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), None)
        completion = str(status.get("completionTime") or "")
        if succeeded is None or succeeded.get("status") not in ("True", "False") or not completion:
            continue
        finished.append((completion, str(run["metadata"]["name"]), succeeded))
    if not finished:
        return None
    completion, name, succeeded = max(finished, key=lambda f: (f[0], f[1]))
    return LastRun(name, str(succeeded.get("reason") or succeeded["status"]), succeeded["status"] == "False",
                   _epoch(completion))


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


def rejection(error: CssrError) -> tuple[str, str]:
    """(reason, status) labels of a delivery that failed after the retries."""
    if isinstance(error, ConfigError):
        return "secret", ""
    status = error.status if isinstance(error, ApiError) else 0
    if status == 0:
        return "unreachable", ""
    if 300 <= status < 400:
        reason = "redirect"
    elif status in (401, 403):
        reason = "refused"
    elif status == 429:
        reason = "throttled"
    elif status < 500:
        reason = "client-error"
    else:
        reason = "server-error"
    return reason, str(status)


class Metrics:
    """One registry per watcher (tests run several in one process); `exposition` is /metrics."""

    def __init__(self, watched: Watched, *, wall: Callable[[], float] = time.time) -> None:
        # `<name>_created` series double every counter and no alert reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        self.watched = watched
        self.wall = wall
        self.registry = registry = CollectorRegistry()
        events = ["pool", "type"]
        self.sent = Counter("cssr_watch_events_sent", "Events handed to the EventListener (one per delivery, "
                            "retries within it not counted)", events, registry=registry)
        self.accepted = Counter("cssr_watch_events_accepted", "Events the EventListener answered with 202",
                                events, registry=registry)
        self.rejected = Counter("cssr_watch_events_rejected", "Deliveries that failed after the retries, by reason "
                                "and HTTP status; the event stays pending and is sent again at a later pass",
                                [*events, "reason", "status"], registry=registry)
        self.unconfirmed = Counter("cssr_watch_events_unconfirmed", "Accepted events after which no PipelineRun "
                                   "appeared within confirm-seconds (the EventListener's filter dropped them)",
                                   events, registry=registry)
        self.recovered = Counter("cssr_watch_events_recovered", "Events found already started by a PipelineRun "
                                 "(sent before a restart, not recorded): recorded, not sent again", events,
                                 registry=registry)
        self.last_accepted = Gauge("cssr_watch_last_accepted_timestamp_seconds", "When the EventListener last "
                                   "accepted an event (0: never, since the watcher started)", registry=registry)
        self.last_sync = Gauge("cssr_watch_last_sync_timestamp_seconds", "When the watcher last finished a "
                               "decision pass over every watched pool (0: not yet)", registry=registry)
        self.sync_errors = Counter("cssr_watch_sync_errors", "Decision passes the cluster's errors cut short",
                                   registry=registry)
        self.restarts = Counter("cssr_watch_restarts", "Watches opened again: ended (the server closed it, at "
                                "watch-timeout-seconds), expired (410 Gone: relisted) or error", ["resource", "reason"],
                                registry=registry)
        Gauge("cssr_watch_resync_seconds", "The watcher's resync-seconds: a pass runs at least this often",
              registry=registry).set(watched.params.resync_seconds)
        self.run_gauge = Gauge("cssr_deploy_last_run_failed", "1 when the newest finished cssr-deploy PipelineRun "
                               "failed (reason: its Succeeded condition's), else 0", ["pipelinerun", "reason"],
                               registry=registry)
        self.run_time = Gauge("cssr_deploy_last_run_completion_timestamp_seconds", "When the newest finished "
                              "cssr-deploy PipelineRun completed", registry=registry)
        self.run: LastRun | None = None
        self.runs_readable = True
        registry.register(_CoverageCollector(watched))
        ProcessCollector(registry=registry)  # memory and file descriptors of a process that runs for months

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- hooks the watcher calls --

    def event_sent(self, event: Event) -> None:
        self.sent.labels(event.pool, event.type).inc()

    def event_accepted(self, event: Event) -> None:
        self.accepted.labels(event.pool, event.type).inc()
        self.last_accepted.set(self.wall())

    def event_rejected(self, event: Event, error: CssrError) -> None:
        self.rejected.labels(event.pool, event.type, *rejection(error)).inc()

    def event_unconfirmed(self, event: Event) -> None:
        self.unconfirmed.labels(event.pool, event.type).inc()

    def event_recovered(self, event: Event) -> None:
        self.recovered.labels(event.pool, event.type).inc()

    def synced(self) -> None:
        self.last_sync.set(self.wall())

    def sync_failed(self) -> None:
        self.sync_errors.inc()

    def watch_restarted(self, resource: str, reason: str) -> None:
        self.restarts.labels(resource, reason).inc()

    def refresh_runs(self, cluster: Cluster, namespace: str, log: Log) -> None:
        """Reread the cssr-deploy PipelineRuns (at start and each resync); keep the last value on errors."""
        if not self.runs_readable:
            return
        try:
            runs = cluster.list(TEKTON_API, "pipelineruns", namespace=namespace,
                                label_selector=f"{PIPELINE_LABEL}={PIPELINE}")
        except (Forbidden, NotFound) as e:
            self.runs_readable = False
            log.warn(f"cannot list PipelineRuns in {namespace} ({e}): cssr_deploy_last_run_failed stays empty; "
                     "grant the watcher list on pipelineruns")
            return
        except CssrError as e:
            log.warn(f"could not read the last {PIPELINE} run: {e}; trying again at the next resync")
            return
        found = last_run(runs)
        if found == self.run:
            return
        if found is not None:
            log.info(f"last {PIPELINE} run: {found.name} {found.reason}")
            self.run_gauge.clear()  # one series: the newest run's
            self.run_gauge.labels(found.name, found.reason).set(1 if found.failed else 0)
            self.run_time.set(found.completed)
        self.run = found


class _CoverageCollector:
    """`cssr_node_kernel_verified`, computed at each scrape from the watcher's caches."""

    def __init__(self, watched: Watched) -> None:
        self.watched = watched

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("cssr_node_kernel_verified", "", labels=["node", "pool", "kernel"])]

    def collect(self) -> Iterable[Metric]:
        w = self.watched
        with w.lock:
            pools = dict(w.pools)
            nodes: list[Mapping[str, Any]] = list(w.nodes.values())
        family = GaugeMetricFamily(
            "cssr_node_kernel_verified", "1 when the node's kernel is in the kernel set of the last good cssr-deploy "
            "run (ConfigMap cssr-deploy-state), else 0; nodes of the watched pools", labels=["node", "pool", "kernel"])
        for row in coverage(w.params.pools, pools, nodes, w.deploy_state):
            family.add_metric([row.node, row.pool, row.kernel], 1 if row.verified else 0)
        yield family
