"""The pool watcher's metrics, scraped over HTTP after real activity against the simulated OpenShift.

The EventListener is the fake of tests/eventlistener_sim.py (the real CEL filter, binding and
template of triggers/), which makes PipelineRuns in the simulated cluster; Tekton's part, finishing
a run, is played here as the controller does it. Checks: the command serves /metrics on its health
port; events sent, accepted, rejected by reason and status, and accepted-but-dropped are counted;
watch restarts and the last sync move; a node's kernel counts as verified only once the report
task's cssr-deploy-state holds it; the last run gauge follows the newest finished run; every
PrometheusRule expression of deploy/monitoring parses as PromQL and reads only metrics and labels
this scrape has.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cssr_tasks import kernels
from cssr_tasks import pool_events as pe
from cssr_tasks import watch_pools as wp
from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.sim import SimulatedCluster
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.upgrades import Upgrades
from eventlistener_sim import FakeEventListener

from support import REPO

NS = "cssr-deploy"
TOKEN = "5ca1ab1e" * 8
K416, K417 = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]
RULES = REPO / "deploy" / "monitoring" / "prometheusrule.yaml"
# Labels Prometheus adds to every sample of a ServiceMonitor's target.
TARGET_LABELS = {"namespace", "job", "instance", "pod", "service", "endpoint", "container"}


def deploy_state(versions: list[str]) -> dict[str, Any]:
    """cssr-deploy-state as report.py writes it after a good run (keys kernel-set-id, kernel-versions, ...)."""
    kernel_set = kernels.kernel_set(versions)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cssr-deploy-state", "namespace": NS},
            "data": {"kernel-set-id": kernels.kernel_set_id(kernel_set),
                     "kernel-versions": json.dumps(kernel_set, separators=(",", ":")),
                     "pipeline-run": "cssr-deploy-first", "time": "2026-01-05T10:00:00Z"}}


@pytest.fixture
def mco(empty_sim: SimulatedCluster) -> Upgrades:
    driver = Upgrades(empty_sim)
    driver.add_pool("master", 1)
    driver.add_pool("worker", 2)
    empty_sim.put(deploy_state([K416]))
    return driver


@pytest.fixture
def listener(mco: Upgrades, httpserver: Any) -> FakeEventListener:
    fake = FakeEventListener(mco.sim, TOKEN)
    httpserver.expect_request("/", method="POST").respond_with_handler(fake)
    return fake


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def start(mco: Upgrades, httpserver: Any, secret_file: Path, log: Any) -> Iterator[Callable[..., str]]:
    """A watcher with its health server, as serve() wires them; returns the /metrics URL."""
    started: list[tuple[wp.Watcher, wp.Health]] = []

    def make(**changes: Any) -> str:
        params = wp.Params(**{"pools": ("worker",), "eventlistener_url": httpserver.url_for("/"),
                              "secret_file": str(secret_file), "namespace": NS, "pipeline_namespace": NS,
                              "health_port": 0, "resync_seconds": 1, "watch_timeout_seconds": 1,
                              "confirm_seconds": 1, **changes})
        retry = RetrySettings(attempts=2, wait_initial=0)
        watcher = wp.Watcher(params, cluster=Cluster.at(mco.sim.url, log=log, retry=retry), log=log,
                             sender=wp.EventListener(params.url, params.secret_file, retry=retry, log=log))
        health = wp.Health(watcher, 0, host="127.0.0.1", metrics=watcher.metrics.exposition).start()
        started.append((watcher, health))
        watcher.start()
        return f"http://127.0.0.1:{health.port}/metrics"

    yield make
    for watcher, health in started:
        watcher.stop()
        health.stop()
        watcher.sender.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[Samples, str]:
    with requests.get(url, timeout=5) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def eventually(url: str, check: Callable[[Samples], bool], timeout: float = 20) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = scrape(url)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"the metrics never met the check; last scrape: {sorted(samples.items())[:40]}")
        time.sleep(0.1)


def tekton_finishes(sim: SimulatedCluster, run: dict[str, Any], *, succeeded: bool, reason: str,
                    completion: str) -> None:
    """What Tekton's controller does to a PipelineRun it ran: the label naming its Pipeline
    (pkg/reconciler/pipelinerun/pipelinerun.go, PipelineLabelKey) and the Succeeded condition
    with startTime and completionTime (docs/pipelineruns.md, "Monitoring execution status")."""
    run = json.loads(json.dumps(run))
    run["metadata"].setdefault("labels", {})["tekton.dev/pipeline"] = run["spec"]["pipelineRef"]["name"]
    run["metadata"].pop("resourceVersion", None)
    run["status"] = {"startTime": "2026-01-05T10:00:00Z", "completionTime": completion, "conditions": [
        {"type": "Succeeded", "status": "True" if succeeded else "False", "reason": reason,
         "message": "Tasks Completed: 9 (Failed: 1, Cancelled 0), Skipped: 0" if not succeeded else
         "Tasks Completed: 9 (Failed: 0, Cancelled 0), Skipped: 0", "lastTransitionTime": completion}]}
    sim.put(run)


def pipelineruns(sim: SimulatedCluster) -> list[dict[str, Any]]:
    return sim.objects("tekton.dev/v1", "PipelineRun", NS)


def upgrade(mco: Upgrades, url: str, release: str = "4.17") -> Samples:
    """Roll the worker pool while the watcher looks on: both events accepted."""
    roll = mco.roll("worker", mco.render("worker", release=release))
    next(roll)
    eventually(url, lambda s: value(s, "cssr_watch_events_accepted_total", pool="worker", type=pe.POOL_UPDATING) == 1)
    for _ in roll:
        pass
    return eventually(url, lambda s: value(s, "cssr_watch_events_accepted_total", pool="worker",
                                           type=pe.KERNEL_CHANGED) == 1)


# -- the command ----------------------------------------------------------------------------


def test_the_command_serves_metrics_on_its_health_port(mco, listener, httpserver, secret_file, tmp_path):
    kubeconfig = mco.sim.write_kubeconfig(tmp_path / "kubeconfig")
    env = {**os.environ, "CSSR_RETRY_WAIT": "0", "PARAM_NAMESPACE": NS, "PARAM_POOLS": "worker",
           "PARAM_EVENTLISTENER_URL": httpserver.url_for("/"), "PARAM_SECRET_FILE": str(secret_file),
           "PARAM_HEALTH_PORT": "0", "PARAM_RESYNC_SECONDS": "1", "PARAM_WATCH_TIMEOUT_SECONDS": "1"}
    before = time.time()
    process = subprocess.Popen([sys.executable, "-m", "cssr_tasks", "watch-pools", "--kubeconfig", str(kubeconfig)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not any("health endpoint on port" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            time.sleep(0.05)
        port = next(int(m.group(1)) for line in lines if (m := re.search(r"health endpoint on port (\d+)", line)))
        url = f"http://127.0.0.1:{port}/metrics"
        samples = upgrade(mco, url)
        assert value(samples, "cssr_watch_events_sent_total", pool="worker", type=pe.POOL_UPDATING) == 1
        assert value(samples, "cssr_watch_events_accepted_total", pool="worker", type=pe.POOL_UPDATING) == 1
        assert (value(samples, "cssr_watch_last_sync_timestamp_seconds") or 0) >= before
        assert (value(samples, "cssr_watch_last_accepted_timestamp_seconds") or 0) >= before
        assert value(samples, "cssr_watch_resync_seconds") == 1
        assert (value(samples, "process_resident_memory_bytes") or 0) > 0
        with requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5) as alive:
            assert alive.status_code == 200, "the probes still answer beside /metrics"
    finally:
        process.terminate()
        process.wait(20)
        reader.join(5)
        process.stderr.close()
    assert len(listener.accepted()) == 2


# -- what the counters count ----------------------------------------------------------------


def test_deliveries_are_counted_accepted_and_rejected_by_reason(mco, listener, start):
    listener.outage(2)  # both attempts of the first delivery get 503
    samples = upgrade(mco, start())
    rejected = value(samples, "cssr_watch_events_rejected_total", pool="worker", type=pe.POOL_UPDATING,
                     reason="server-error", status="503")
    assert rejected == 1
    # The rejected event stays pending and goes again: one more send than events.
    sent = sum(v for (name, _), v in samples.items() if name == "cssr_watch_events_sent_total")
    accepted = sum(v for (name, _), v in samples.items() if name == "cssr_watch_events_accepted_total")
    assert (sent, accepted) == (3, 2)
    assert [r.status for r in listener.received][:2] == [503, 503]


def test_an_event_the_filter_drops_is_accepted_and_counted_unconfirmed(mco, listener, start, secret_file):
    secret_file.write_text("not-the-token\n")  # the EventListener answers 202 and its filter drops it
    url = start()
    next(mco.roll("worker", mco.render("worker", release="4.17")))
    samples = eventually(url, lambda s: value(s, "cssr_watch_events_unconfirmed_total", pool="worker",
                                              type=pe.POOL_UPDATING) == 1)
    assert value(samples, "cssr_watch_events_accepted_total", pool="worker", type=pe.POOL_UPDATING) == 1
    assert pipelineruns(mco.sim) == []


def test_a_404_counts_as_a_client_error_and_nothing_is_accepted(mco, httpserver, start):
    httpserver.expect_request("/", method="POST").respond_with_data("no such listener", status=404)
    url = start()
    next(mco.roll("worker", mco.render("worker", release="4.17")))
    samples = eventually(url, lambda s: (value(s, "cssr_watch_events_rejected_total", pool="worker",
                                               type=pe.POOL_UPDATING, reason="client-error", status="404") or 0) >= 1)
    assert not any(name == "cssr_watch_events_accepted_total" for name, _ in samples)
    assert value(samples, "cssr_watch_last_accepted_timestamp_seconds") == 0


def test_watch_restarts_and_syncs_are_counted(mco, listener, start):
    url = start()  # watch-timeout-seconds=1: the server ends each watch after a second
    first = eventually(url, lambda s: (value(s, "cssr_watch_restarts_total", resource="nodes", reason="ended") or 0) >= 1)
    synced = value(first, "cssr_watch_last_sync_timestamp_seconds") or 0
    assert synced > 0
    later = eventually(url, lambda s: (value(s, "cssr_watch_last_sync_timestamp_seconds") or 0) > synced)
    assert (value(later, "cssr_watch_restarts_total", resource="machineconfigpools", reason="ended") or 0) >= 1
    # etcd compacts past the watches' resourceVersion: 410 Gone, and the watcher relists.
    mco.sim.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": "default"}})
    mco.sim.store.compact()
    eventually(url, lambda s: (value(s, "cssr_watch_restarts_total", resource="nodes", reason="expired") or 0)
               + (value(s, "cssr_watch_restarts_total", resource="machineconfigpools", reason="expired") or 0) >= 1)


# -- the two joins: kernels with verified modules, the last run -----------------------------


def test_a_node_kernel_is_verified_only_once_a_good_run_recorded_it(mco, listener, start):
    url = start()
    nodes = mco.members["worker"]
    samples = eventually(url, lambda s: all(value(s, "cssr_node_kernel_verified", node=n, pool="worker", kernel=K416)
                                            == 1 for n in nodes))
    assert not any(dict(labels).get("pool") == "master" for name, labels in samples
                   if name == "cssr_node_kernel_verified"), "only the watched pools"
    target = mco.render("worker", release="4.17")
    roll = mco.roll("worker", target)
    while mco.node(nodes[0])["status"]["nodeInfo"]["kernelVersion"] == K416:
        next(roll)
    samples = eventually(url, lambda s: value(s, "cssr_node_kernel_verified", node=nodes[0], pool="worker",
                                              kernel=K417) == 0)
    assert value(samples, "cssr_node_kernel_verified", node=nodes[1], pool="worker", kernel=K416) == 1
    assert value(samples, "cssr_node_kernel_verified", node=nodes[0], pool="worker", kernel=K416) is None, \
        "a node's old kernel leaves with it"
    # The pipeline's run succeeds and its report records the new set (both kernels, mid-upgrade).
    mco.sim.put(deploy_state([K416, K417]))
    eventually(url, lambda s: value(s, "cssr_node_kernel_verified", node=nodes[0], pool="worker", kernel=K417) == 1)


def test_the_watchers_own_baseline_verifies_nothing(mco, listener, start):
    mco.sim.delete("v1", "ConfigMap", "cssr-deploy-state", NS)
    url = start()
    samples = eventually(url, lambda s: any(name == "cssr_node_kernel_verified" for name, _ in s))
    rows = {dict(labels)["node"]: v for (name, labels), v in samples.items() if name == "cssr_node_kernel_verified"}
    assert rows == dict.fromkeys(mco.members["worker"], 0.0)


def test_the_last_run_gauge_follows_the_newest_finished_run(mco, listener, start):
    url = start()
    upgrade(mco, url)
    first, second = sorted(pipelineruns(mco.sim), key=lambda r: r["metadata"]["name"])
    tekton_finishes(mco.sim, first, succeeded=False, reason="Failed", completion="2026-01-05T10:20:00Z")
    samples = eventually(url, lambda s: value(s, "cssr_deploy_last_run_failed", pipelinerun=first["metadata"]["name"],
                                              reason="Failed") == 1)
    assert value(samples, "cssr_deploy_last_run_completion_timestamp_seconds") == 1767608400.0
    # A run still going is not judged; once it succeeds, it is the last run and the failure leaves.
    tekton_finishes(mco.sim, second, succeeded=True, reason="Succeeded", completion="2026-01-05T10:40:00Z")
    samples = eventually(url, lambda s: value(s, "cssr_deploy_last_run_failed", pipelinerun=second["metadata"]["name"],
                                              reason="Succeeded") == 0)
    assert [k for k in samples if k[0] == "cssr_deploy_last_run_failed"] == \
        [("cssr_deploy_last_run_failed", frozenset({("pipelinerun", second["metadata"]["name"]),
                                                    ("reason", "Succeeded")}))]


# -- the alerts read what the watcher exports -----------------------------------------------


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names it matches on) of every selector in a PromQL expression."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node.name, {m.name for m in node.matchers.matchers}))

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found


def rule_problems(rules: list[dict[str, Any]], text: str) -> list[str]:
    """What is wrong with alert rules against an exposition: unparsable PromQL, a metric the
    watcher does not export, a label neither the metric nor the scrape carries."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    problems = []
    for rule in rules:
        try:
            found = selectors(rule["expr"])
        except ValueError as e:
            problems.append(f"{rule['alert']}: not PromQL: {e}")
            continue
        available = set(TARGET_LABELS)
        for name, matched in found:
            if name not in labels:
                problems.append(f"{rule['alert']}: no metric {name}")
                continue
            available |= labels[name]
            problems += [f"{rule['alert']}: {name} has no label {m}" for m in matched - labels[name] - TARGET_LABELS]
        by = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
        used = {label for group in by for label in re.split(r"\s*,\s*", group.strip())}
        used |= set(re.findall(r"\$labels\.(\w+)", json.dumps(rule.get("annotations") or {})))
        problems += [f"{rule['alert']}: label {label} is in no series it reads" for label in used - available]
    return problems


def alert_rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load(RULES.read_text())
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_every_alert_is_promql_over_metrics_and_labels_the_watcher_exports(mco, listener, start, secret_file):
    alerts = {r["alert"] for r in alert_rules()}
    assert {"CssrNodeKernelWithoutVerifiedModules", "CssrDeployLastRunFailed", "CssrWatcherNotSyncing"} <= alerts
    listener.outage(2)
    url = start()
    upgrade(mco, url)
    tekton_finishes(mco.sim, pipelineruns(mco.sim)[0], succeeded=False, reason="Failed",
                    completion="2026-01-05T10:20:00Z")
    secret_file.write_text("not-the-token\n")  # the next event is dropped by the filter: unconfirmed
    next(mco.roll("worker", mco.render("worker", release="4.17", kernel_type="realtime")))
    eventually(url, lambda s: any(name == "cssr_watch_events_unconfirmed_total" for name, _ in s)
               and any(name == "cssr_deploy_last_run_failed" for name, _ in s))
    _, text = scrape(url)
    assert rule_problems(alert_rules(), text) == []


@pytest.mark.parametrize(("expr", "problem"), [
    ("cssr_node_kernel_verifed == 0", "no metric cssr_node_kernel_verifed"),
    ("cssr_deploy_last_run_failed{run=\"x\"} == 1", "has no label run"),
    ("sum by (cluster) (cssr_watch_events_rejected_total)", "label cluster is in no series"),
    ("rate(cssr_watch_restarts_total[5m]", "not PromQL"),
], ids=["misspelled-metric", "unknown-matcher", "unknown-by-label", "unbalanced"])
def test_the_rule_check_catches_a_broken_expression(expr, problem):
    text = ("# TYPE cssr_node_kernel_verified gauge\ncssr_node_kernel_verified{node=\"a\",pool=\"w\",kernel=\"k\"} 1\n"
            "# TYPE cssr_deploy_last_run_failed gauge\ncssr_deploy_last_run_failed{pipelinerun=\"p\",reason=\"Failed\"} 1\n"
            "# TYPE cssr_watch_events_rejected_total counter\n"
            "cssr_watch_events_rejected_total{pool=\"w\",type=\"t\",reason=\"r\",status=\"503\"} 1\n"
            "# TYPE cssr_watch_restarts_total counter\ncssr_watch_restarts_total{resource=\"nodes\",reason=\"ended\"} 1\n")
    problems = rule_problems([{"alert": "Broken", "expr": expr}], text)
    assert len(problems) == 1 and problem in problems[0], problems
