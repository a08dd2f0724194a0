"""watch-pools against the simulated OpenShift and a fake EventListener (pytest-httpserver).

Rolling upgrades driven by cssr_tasks.sim.upgrades through three pools (master, worker,
worker-cnf), nodes changing kernel one by one, conditions flapping, a chrony-only MachineConfig
update and a switch to the realtime kernel. The EventListener is pytest-httpserver running the
real CEL filter, binding and template of triggers/ (tests/eventlistener_sim.py), which creates
the PipelineRun in the simulated cluster. Checks: exactly the expected events, no duplicate
across a restart mid-upgrade or a crash between the 202 and its record, delivery after an
EventListener outage, a relist after 410 Gone, the health endpoint and the command line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from cssr_tasks import kernels
from cssr_tasks import pool_events as pe
from cssr_tasks import watch_pools as wp
from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.sim import SimulatedCluster
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.upgrades import Upgrades
from eventlistener_sim import FakeEventListener

NS = "cssr-deploy"
TOKEN = "c0ffee" * 10 + "c0ff"
K416, K417, RT417 = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1], fx.RELEASES["4.17"][2]
MCO = wp.MCO_API


@pytest.fixture
def mco(empty_sim: SimulatedCluster) -> Upgrades:
    """Masters, three workers and two worker-cnf nodes (which keep the worker label), all on 4.16,
    and the pipeline's record of its last deployment for the two selected pools."""
    driver = Upgrades(empty_sim)
    driver.add_pool("master", 3)
    driver.add_pool("worker", 3)
    driver.add_pool("worker-cnf", 2, roles=("worker",), prefix="cnf")
    deployed = kernels.kernel_set([K416])
    empty_sim.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cssr-deploy-state", "namespace": NS},
                   "data": {f"{pool}.{key}": value for pool in ("worker", "worker-cnf") for key, value in (
                       ("kernel-set-id", kernels.kernel_set_id(deployed)), ("kernel-versions", json.dumps(deployed)))}})
    return driver


@pytest.fixture
def listener(mco: Upgrades, httpserver: Any) -> FakeEventListener:
    """The EventListener, its pool list patched to both selected pools (as a user's kustomize
    patch would) so that worker-cnf events make PipelineRuns too."""
    fake = FakeEventListener(mco.sim, TOKEN, pools=("worker", "worker-cnf"))
    httpserver.expect_request("/", method="POST").respond_with_handler(fake)
    return fake


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def start(mco: Upgrades, httpserver: Any, secret_file: Path, log: Any) -> Iterator[Callable[..., wp.Watcher]]:
    """Start a watcher (as a new process would: nothing in memory); every one is stopped at the end."""
    started: list[wp.Watcher] = []

    def make(**changes: Any) -> wp.Watcher:
        settings = {"pools": ("worker", "worker-cnf"), "eventlistener_url": httpserver.url_for("/"),
                    "secret_file": str(secret_file), "namespace": NS, "pipeline_namespace": NS, "health_port": 0,
                    "resync_seconds": 1, "watch_timeout_seconds": 1, "confirm_seconds": 2, **changes}
        params = wp.Params(**settings)
        retry = RetrySettings(attempts=5, wait_initial=0)
        cluster = Cluster.at(mco.sim.url, log=log, retry=retry)
        watcher = wp.Watcher(params, cluster=cluster, log=log,
                             sender=wp.EventListener(params.url, params.secret_file, retry=retry, log=log))
        started.append(watcher)
        return watcher.start()

    yield make
    for watcher in started:
        watcher.stop()
        watcher.sender.close()


def latest(sim: SimulatedCluster, api_version: str, kind: str) -> int:
    return max(int(o["metadata"]["resourceVersion"]) for o in sim.objects(api_version, kind))


def settle(watcher: wp.Watcher, sim: SimulatedCluster, timeout: float = 15) -> None:
    """Wait until a whole decision pass has seen the cluster as it is now."""
    want = {"machineconfigpools": latest(sim, MCO, "MachineConfigPool"), "nodes": latest(sim, "v1", "Node")}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(int(watcher.reconciled.get(k) or 0) >= v for k, v in want.items()):
            return
        time.sleep(0.01)
    raise AssertionError(f"the watcher did not catch up with {want}: it reconciled {watcher.reconciled}")


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def sent(listener: FakeEventListener) -> list[tuple[str, str, str]]:
    return [(b["type"], b["pool"], b["targetConfig"]) for b in listener.accepted()]


def pipelineruns(sim: SimulatedCluster) -> list[dict[str, Any]]:
    return sim.objects("tekton.dev/v1", "PipelineRun", NS)


def test_rolling_upgrades_send_exactly_the_expected_events(mco, listener, start, log):
    sim = mco.sim
    watcher = start()
    settle(watcher, sim)
    assert listener.received == []

    # A chrony change on worker: a new rendered config, nodes roll, the kernel stays.
    chrony = mco.render("worker", release="4.16", files=("/etc/chrony.conf",))
    for _ in mco.roll("worker", chrony, flaps=True):
        settle(watcher, sim)
    assert listener.received == []
    assert "same osImageURL and kernelType, so the kernel stays: no event" in log.text

    # 4.16 -> 4.17 on all three pools at once, node by node, with flapping conditions; the
    # watcher restarts while worker is half way through.
    targets = {pool: mco.render(pool, release="4.17") for pool in ("master", "worker", "worker-cnf")}
    rolls = {pool: mco.roll(pool, target, flaps=True) for pool, target in targets.items()}
    step = 0
    while rolls:
        for pool in list(rolls):
            if next(rolls[pool], None) is None:
                del rolls[pool]
                continue
            settle(watcher, sim)
            step += 1
            if step == 6:  # worker's pool-updating went out, and a node or two have the new kernel
                assert (pe.POOL_UPDATING, "worker", targets["worker"]) in sent(listener)
                watcher.stop()
                watcher = start()
                settle(watcher, sim)

    # The realtime kernel on worker-cnf, with the EventListener down for a while when it starts.
    realtime = mco.render("worker-cnf", release="4.17", kernel_type="realtime")
    roll = mco.roll("worker-cnf", realtime, flaps=True)
    listener.outage(8)
    next(roll)
    wait_for(lambda: (pe.POOL_UPDATING, "worker-cnf", realtime) in sent(listener))
    for _ in roll:
        settle(watcher, sim)

    # exactly these, each once: the upgrade's four in the order the pools got there, then realtime's two
    upgrade = [(kind, pool, targets[pool]) for pool in ("worker", "worker-cnf")
               for kind in (pe.POOL_UPDATING, pe.KERNEL_CHANGED)]
    assert sorted(sent(listener)[:4]) == sorted(upgrade)
    for pool in ("worker", "worker-cnf"):
        assert sent(listener).index((pe.POOL_UPDATING, pool, targets[pool])) < sent(listener).index(
            (pe.KERNEL_CHANGED, pool, targets[pool]))
    assert sent(listener)[4:] == [(pe.POOL_UPDATING, "worker-cnf", realtime),
                                  (pe.KERNEL_CHANGED, "worker-cnf", realtime)]
    # every POST carried the secret, and the outage was retried until a 202
    assert len(listener.received) == 6 + 8  # nothing else reached the EventListener, across the restart too
    assert all(r.headers.get(wp.TOKEN_HEADER) == TOKEN for r in listener.received)
    assert [r.status for r in listener.received].count(503) == 8
    assert "stays pending" in log.text
    # one PipelineRun per event, found by its idempotency key
    runs = pipelineruns(sim)
    keys = [r["metadata"]["labels"][wp.KEY_LABEL] for r in runs]
    assert sorted(keys) == sorted(b["idempotencyKey"] for b in listener.accepted())
    assert len(set(keys)) == 6
    # what was sent says what the pipeline needs
    rt_event = next(b for b in listener.accepted() if b["targetConfig"] == realtime and b["type"] == pe.POOL_UPDATING)
    assert rt_event["kernelType"] == "realtime"
    assert rt_event["currentConfig"] == targets["worker-cnf"]
    settled_rt = next(b for b in listener.accepted() if b["targetConfig"] == realtime and b["type"] == pe.KERNEL_CHANGED)
    assert settled_rt["kernelVersions"] == [RT417]
    settled_worker = next(b for b in listener.accepted() if b["pool"] == "worker" and b["type"] == pe.KERNEL_CHANGED)
    assert settled_worker["kernelVersions"] == [K417]
    # and the record survives in the state ConfigMap
    state = sim.get("v1", "ConfigMap", "cssr-watch-pools-state", NS)
    assert sorted(k for k in state["data"] if not k.startswith("baseline.")) == sorted(
        f"{t}.{p}.{c}" for t, p, c in sent(listener))


def test_events_keep_their_order_per_pool(mco, listener, start):
    """pool-updating goes out before the first node reboots, kernel-changed only once all have."""
    sim = mco.sim
    watcher = start()
    target = mco.render("worker", release="4.17")
    roll = mco.roll("worker", target)
    next(roll)  # the pool points at the target; no node has rebooted yet
    settle(watcher, sim)
    assert sent(listener) == [(pe.POOL_UPDATING, "worker", target)]
    assert listener.accepted()[0]["kernelVersions"] == [K416]
    for _ in roll:
        settle(watcher, sim)
        kernels_now = {n["status"]["nodeInfo"]["kernelVersion"] for n in sim.objects("v1", "Node")
                       if n["metadata"]["name"].startswith("worker-")}
        if kernels_now != {K417}:
            assert len(sent(listener)) == 1
    assert sent(listener) == [(pe.POOL_UPDATING, "worker", target), (pe.KERNEL_CHANGED, "worker", target)]


def test_an_upgrade_missed_while_the_watcher_was_down_is_not_lost(mco, listener, start):
    sim = mco.sim
    target = mco.render("worker", release="4.17")
    mco.upgrade("worker", target, flaps=True)
    watcher = start()
    settle(watcher, sim)
    assert sent(listener) == [(pe.KERNEL_CHANGED, "worker", target)]


def test_a_crash_between_the_202_and_its_record_sends_nothing_twice(mco, listener, start, log):
    sim = mco.sim
    for method in ("POST", "PUT"):  # the state ConfigMap cannot be written
        sim.fail(method, f"/namespaces/{NS}/configmaps", 500, times=10_000)
    watcher = start()
    target = mco.render("worker", release="4.17")
    roll = mco.roll("worker", target)
    next(roll)
    settle(watcher, sim)
    next(roll)
    settle(watcher, sim)
    assert sent(listener) == [(pe.POOL_UPDATING, "worker", target)]  # accepted once, kept in memory
    assert "could not record 1 sent event(s)" in log.text
    watcher.stop()  # the process dies with the event unrecorded

    sim.emulator.faults.clear()
    watcher = start()
    settle(watcher, sim)
    assert len(listener.received) == 1
    assert "already carries idempotency key" in log.text
    state = sim.get("v1", "ConfigMap", "cssr-watch-pools-state", NS)
    record = json.loads(state["data"][f"{pe.POOL_UPDATING}.worker.{target}"])
    assert record["eventID"] == listener.received[0].event_id
    for _ in roll:
        settle(watcher, sim)
    assert sent(listener) == [(pe.POOL_UPDATING, "worker", target), (pe.KERNEL_CHANGED, "worker", target)]


def test_a_compacted_history_makes_the_watches_relist(mco, listener, start, log):
    sim = mco.sim
    watcher = start()
    settle(watcher, sim)
    relists = watcher.stats.relists
    # Other objects move the cluster's resourceVersion on; then etcd compacts. Both watches
    # reconnect within a second, from a resourceVersion now gone.
    sim.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": "default"}})
    sim.store.compact()
    wait_for(lambda: watcher.stats.relists >= relists + 2)
    assert "(410 Gone); relisting" in log.text
    target = mco.render("worker", release="4.17")
    for _ in mco.roll("worker", target):
        settle(watcher, sim)
    assert sent(listener) == [(pe.POOL_UPDATING, "worker", target), (pe.KERNEL_CHANGED, "worker", target)]


def test_a_filter_that_drops_the_event_is_reported(mco, httpserver, start, log):
    """The EventListener answers 202 even when its filter rejects (tektoncd/triggers#1465, #931)."""
    fake = FakeEventListener(mco.sim, TOKEN)  # its filter lists worker only
    httpserver.expect_request("/", method="POST").respond_with_handler(fake)
    watcher = start(pools=("worker-cnf",), confirm_seconds=1)
    target = mco.render("worker-cnf", release="4.17")
    next(mco.roll("worker-cnf", target))
    settle(watcher, mco.sim)
    assert [r.status for r in fake.received] == [202]
    assert fake.accepted() == []
    assert "no PipelineRun appeared within 1s" in log.text
    assert pipelineruns(mco.sim) == []


def test_a_wrong_secret_is_rejected_and_never_logged(mco, listener, start, secret_file, log):
    secret_file.write_text("not-the-token")
    watcher = start(confirm_seconds=1)
    target = mco.render("worker", release="4.17")
    next(mco.roll("worker", target))
    settle(watcher, mco.sim)
    assert listener.received[0].headers[wp.TOKEN_HEADER] == "not-the-token"
    assert listener.accepted() == []
    assert "not-the-token" not in log.text
    assert TOKEN not in log.text


def test_no_deployment_recorded_means_a_baseline(mco, listener, start, log):
    sim = mco.sim
    sim.delete("v1", "ConfigMap", "cssr-deploy-state", NS)
    watcher = start(pools=("worker",))
    settle(watcher, sim)
    wait_for(lambda: "baseline.worker" in (sim.get("v1", "ConfigMap", "cssr-watch-pools-state", NS) or {}).get(
        "data", {}))
    assert listener.received == []
    chrony = mco.render("worker", files=("/etc/chrony.conf",))
    mco.upgrade("worker", chrony)
    settle(watcher, sim)
    assert listener.received == []
    target = mco.render("worker", release="4.17")
    for _ in mco.roll("worker", target):
        settle(watcher, sim)
    assert sent(listener) == [(pe.POOL_UPDATING, "worker", target), (pe.KERNEL_CHANGED, "worker", target)]
    assert "not covered by the last deployment" in log.text
    assert "watcher baseline): kernel-changed" in log.text


def test_state_writes_merge_with_a_concurrent_writer(mco, log):
    sim = mco.sim
    mine = wp.StateStore(Cluster.at(sim.url, log=log), NS, "cssr-watch-pools-state", log)
    mine.load()
    mine.update({"a": "1"})
    theirs = wp.StateStore(Cluster.at(sim.url, log=log), NS, "cssr-watch-pools-state", log)
    theirs.load()
    theirs.update({"b": "2"})
    mine.update({"c": "3"})  # from a stale resourceVersion: 409, reread, merged
    assert sim.get("v1", "ConfigMap", "cssr-watch-pools-state", NS)["data"] == {"a": "1", "b": "2", "c": "3"}
    assert [r.status for r in sim.requests if r.verb == "update"] == [200, 409, 200]
    assert "changed under us (409, attempt 1/10)" in log.text


def test_health_endpoints(mco, listener, start):
    watcher = start()
    health = wp.Health(watcher, 0, host="127.0.0.1").start()
    try:
        url = f"http://127.0.0.1:{health.port}"
        wait_for(watcher.ready)
        with requests.get(f"{url}/readyz", timeout=5) as ready, requests.get(f"{url}/healthz", timeout=5) as alive:
            assert (ready.status_code, alive.status_code) == (200, 200)
        with requests.get(f"{url}/nope", timeout=5) as missing:
            assert missing.status_code == 404
        watcher.stop()
        with requests.get(f"{url}/healthz", timeout=5) as dead:
            assert dead.status_code == 503
    finally:
        health.stop()


def test_health_is_not_ready_before_the_first_list(mco, secret_file, log):
    params = wp.Params(namespace=NS, secret_file=str(secret_file))
    idle = wp.Watcher(params, cluster=Cluster.at(mco.sim.url, log=log), log=log,
                      sender=wp.EventListener("http://127.0.0.1:9", str(secret_file),
                                              retry=RetrySettings(attempts=1, wait_initial=0), log=log))
    health = wp.Health(idle, 0, host="127.0.0.1").start()
    try:
        for path in ("/readyz", "/healthz"):
            with requests.get(f"http://127.0.0.1:{health.port}{path}", timeout=5) as response:
                assert response.status_code == 503
    finally:
        health.stop()
        idle.sender.close()


def test_create_secret_makes_a_random_token_and_never_prints_it(mco, run_cli, tmp_path):
    kubeconfig = str(mco.sim.write_kubeconfig(tmp_path / "kubeconfig"))
    first = run_cli(["watch-pools", "create-secret", "--kubeconfig", kubeconfig, "--namespace", NS])
    assert first.code == 0, first.err
    secret = mco.sim.get("v1", "Secret", wp.SECRET_NAME, NS)
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 64 and int(token, 16) >= 0
    assert token not in first.out + first.err
    again = run_cli(["watch-pools", "create-secret", "--kubeconfig", kubeconfig, "--namespace", NS])
    assert "left as it is" in again.err
    assert mco.sim.get("v1", "Secret", wp.SECRET_NAME, NS)["data"] == secret["data"]
    rotated = run_cli(["watch-pools", "create-secret", "--kubeconfig", kubeconfig, "--namespace", NS, "--rotate"])
    assert rotated.code == 0
    assert mco.sim.get("v1", "Secret", wp.SECRET_NAME, NS)["data"] != secret["data"]


@pytest.mark.parametrize(("env", "message"), [
    ({"PARAM_NAMESPACE": NS, "PARAM_SECRET_FILE": "/nonexistent/token"}, "could not read the trigger secret"),
    ({"PARAM_NAMESPACE": NS, "PARAM_POOLS": "Worker"}, "param pools='Worker'"),
    ({"PARAM_NAMESPACE": NS, "PARAM_EVENTLISTENER_URL": "el-cssr-deploy:8080"}, "param eventlistener-url"),
], ids=["no-secret", "bad-pool", "bad-url"])
def test_the_command_fails_clearly_on_bad_input(mco, run_cli, tmp_path, env, message):
    kubeconfig = str(mco.sim.write_kubeconfig(tmp_path / "kubeconfig"))
    result = run_cli(["watch-pools", "--kubeconfig", kubeconfig], env)
    assert result.code == 2
    assert message in result.err


def test_the_command_runs_as_the_pod_does_until_sigterm(mco, listener, httpserver, secret_file, tmp_path):
    kubeconfig = mco.sim.write_kubeconfig(tmp_path / "kubeconfig")
    env = {**os.environ, "CSSR_RETRY_WAIT": "0", "PARAM_NAMESPACE": NS, "PARAM_POOLS": "worker,worker-cnf",
           "PARAM_EVENTLISTENER_URL": httpserver.url_for("/"), "PARAM_SECRET_FILE": str(secret_file),
           "PARAM_HEALTH_PORT": "0", "PARAM_RESYNC_SECONDS": "1", "PARAM_WATCH_TIMEOUT_SECONDS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cssr_tasks", "watch-pools", "--kubeconfig", str(kubeconfig)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("listed 8 nodes" in line for line in lines))
        port = next(int(m.group(1)) for line in lines if (m := re.search(r"health endpoint on port (\d+)", line)))
        target = mco.render("worker", release="4.17")
        mco.upgrade("worker", target)
        wait_for(lambda: (pe.KERNEL_CHANGED, "worker", target) in sent(listener))
        with requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5) as alive:
            assert alive.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)
        process.stderr.close()
    assert any(line.rstrip().endswith("stopped") for line in lines)
    assert TOKEN not in "".join(lines)


# -- hostile input and hostile servers ----------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Another host's server: records every request it gets, answers 202."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        Recorder.seen.append(dict(self.headers))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_the_token_never_follows_a_redirect_to_another_host(mco, httpserver, start, log, status):
    """An EventListener URL that redirects (a moved Route, a hostile proxy) must not hand the
    token to the host the redirect names: 127.0.0.2 is another host on the loopback."""
    Recorder.seen = []
    other = ThreadingHTTPServer(("127.0.0.2", 0), Recorder)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        location = f"http://127.0.0.2:{other.server_address[1]}/"
        httpserver.expect_request("/", method="POST").respond_with_data("", status=status,
                                                                         headers={"Location": location})
        watcher = start(confirm_seconds=0)
        target = mco.render("worker", release="4.17")
        next(mco.roll("worker", target))
        settle(watcher, mco.sim)
        wait_for(lambda: watcher.stats.posts_failed >= 1)
    finally:
        other.shutdown()
        other.server_close()
    assert Recorder.seen == []
    assert [r.headers.get(wp.TOKEN_HEADER) for r, _ in httpserver.log] == [TOKEN]
    assert f"answered {status} with a redirect to {location}" in log.text
    assert "never sent across a redirect" in log.text
    assert TOKEN not in log.text


def requests_per_resource(sim: SimulatedCluster, seconds: float) -> dict[str, float]:
    counts: dict[str, int] = {}
    for r in sim.requests:
        if r.resource in ("machineconfigpools", "nodes") and r.verb in ("list", "watch"):
            counts[f"{r.verb} {r.resource}"] = counts.get(f"{r.verb} {r.resource}", 0) + 1
    return {k: v / seconds for k, v in counts.items()}


def test_the_lowest_settings_make_a_few_requests_per_second(mco, listener, start, log):
    """resync-seconds=1 and watch-timeout-seconds=1 are the lowest the params allow; the watcher
    then lists once and opens about one watch per second per resource (issue 14: a 0 interval
    made 1,501 LISTs a second)."""
    mco.sim.clear_requests()
    watcher = start(resync_seconds=1, watch_timeout_seconds=1)
    time.sleep(4)
    rates = requests_per_resource(mco.sim, 4)
    print(f"requests per second at the lowest settings: {rates}")
    assert rates["list machineconfigpools"] <= 0.5 and rates["list nodes"] <= 0.5
    assert rates["watch machineconfigpools"] <= 1.5 and rates["watch nodes"] <= 1.5
    assert watcher.ready()


def test_a_server_that_answers_410_to_everything_is_not_flooded(mco, listener, start, log):
    """Each 410 means "relist"; a server (or proxy) that answers it to every request would turn
    list-watch into a tight loop without the loop's pace of one round a second."""
    mco.sim.fail("GET", "/machineconfigpools", 410, times=100000)
    mco.sim.clear_requests()
    start()
    time.sleep(3)
    count = sum(requests_per_resource(mco.sim, 1).get(f"{verb} machineconfigpools", 0) for verb in ("list", "watch"))
    print(f"requests in 3 s to a server answering 410: {count:.0f}")
    assert 2 <= count <= 5  # one round a second, the first at once
    assert "(410 Gone); relisting" in log.text


@pytest.mark.parametrize(("env", "message"), [
    ({"PARAM_RESYNC_SECONDS": "0"}, "param resync-seconds=0 is below the minimum 1"),
    ({"PARAM_WATCH_TIMEOUT_SECONDS": "0"}, "param watch-timeout-seconds=0 is below the minimum 1"),
    ({"PARAM_RESYNC_SECONDS": "nan"}, "param resync-seconds='nan' is not a whole number"),
    ({"PARAM_CONFIRM_SECONDS": "1e20"}, "param confirm-seconds='1e20' is not a whole number"),
    ({"PARAM_CONFIRM_SECONDS": "99999999999999999999999"}, "param confirm-seconds=99999999999999999999999 is above"),
    ({"PARAM_HEALTH_PORT": "-1"}, "param health-port=-1 is below the minimum 0"),
    ({"PARAM_POOLS": "[1]"}, "param pools='[1]' must name"),
    ({"PARAM_SECRET_FILE": "../../etc/shadow"}, "param secret-file='../../etc/shadow' is not valid"),
    ({"PARAM_EVENTLISTENER_URL": "http://user:pw@el:8080/"}, "param eventlistener-url="),
    ({"CSSR_RETRY_ATTEMPTS": "abc"}, "setting CSSR_RETRY_ATTEMPTS='abc' is not a whole number"),
    ({"CSSR_RETRY_WAIT": "inf"}, "setting CSSR_RETRY_WAIT='inf' is not a number of seconds"),
], ids=["resync-0", "watch-0", "nan", "1e20", "huge", "negative-port", "pools-[1]", "secret-traversal",
        "url-userinfo", "retry-attempts-abc", "retry-wait-inf"])
def test_hostile_values_end_in_one_line_and_exit_2(mco, run_cli, tmp_path, env, message):
    kubeconfig = str(mco.sim.write_kubeconfig(tmp_path / "kubeconfig"))
    mco.sim.clear_requests()
    result = run_cli(["watch-pools", "--kubeconfig", kubeconfig], {"PARAM_NAMESPACE": NS, **env})
    assert result.code == 2
    assert result.err.count("\n") == 1 and message in result.err and "Traceback" not in result.err
    assert mco.sim.requests == []


def test_a_results_dir_that_is_a_file_is_refused(mco, tmp_path, capsys):
    from cssr_tasks import cli

    afile = tmp_path / "afile"
    afile.write_text("keep me")
    kubeconfig = str(mco.sim.write_kubeconfig(tmp_path / "kubeconfig"))
    for argv in (["watch-pools", "--results-dir", str(afile)], ["detect-kernel", "--results-dir", str(afile / "x")]):
        assert cli.main([*argv, "--kubeconfig", kubeconfig], {"PARAM_NAMESPACE": NS, "CSSR_RETRY_WAIT": "0"}) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{afile} is a file, not a folder" in err
    assert afile.read_text() == "keep me"


def test_a_token_a_header_cannot_carry_is_refused_at_start(mco, run_cli, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("abc\ndef")
    kubeconfig = str(mco.sim.write_kubeconfig(tmp_path / "kubeconfig"))
    result = run_cli(["watch-pools", "--kubeconfig", kubeconfig],
                     {"PARAM_NAMESPACE": NS, "PARAM_SECRET_FILE": str(secret), "PARAM_HEALTH_PORT": "0"})
    assert result.code == 2
    assert "holds characters an HTTP header cannot carry" in result.err and "abc" not in result.err


def test_a_health_port_in_use_is_one_line(mco, run_cli, tmp_path, secret_file):
    taken = ThreadingHTTPServer(("", 0), Recorder)
    try:
        kubeconfig = str(mco.sim.write_kubeconfig(tmp_path / "kubeconfig"))
        result = run_cli(["watch-pools", "--kubeconfig", kubeconfig],
                         {"PARAM_NAMESPACE": NS, "PARAM_SECRET_FILE": str(secret_file),
                          "PARAM_HEALTH_PORT": str(taken.server_address[1])})
    finally:
        taken.server_close()
    assert result.code == 2
    assert f"could not serve the health endpoint on port {taken.server_address[1]}" in result.err
