"""Benchmark of the pool watcher: events per second it processes, and POSTs per upgrade.

A simulated cluster with three pools (master 3 nodes, worker 40, worker-cnf 12) goes through a
chrony-only rollout of worker, then a 4.16 -> 4.17 upgrade of all three pools at once (node by
node, conditions flapping), then a switch of worker-cnf to the realtime kernel. The watcher
(worker and worker-cnf selected) runs against it with a local EventListener stand-in that
answers 202. Printed: watch events processed per second (end to end, through the simulated
API), decisions per second of the pure `assess`, and POSTs per rollout per pool and event type
(expected: one per selected pool per event type for a kernel change, none for chrony).

    .venv/bin/python bench/watch_pools.py
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cssr_tasks import kernels
from cssr_tasks import pool_events as pe
from cssr_tasks import watch_pools as wp
from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.log import Log
from cssr_tasks.sim import SimulatedCluster
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.upgrades import Upgrades

NS = "cssr-deploy"
TOKEN = "bench-" + uuid.uuid4().hex
POOLS = {"master": 3, "worker": 40, "worker-cnf": 12}


class Quiet(Log):
    def _write(self, level: str, message: str) -> None:
        if level == "warning":
            super()._write(level, message)


def eventlistener() -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            ok = self.headers.get(wp.TOKEN_HEADER) == TOKEN
            if ok:
                received.append(body)
            answer = json.dumps({"eventListener": "cssr-deploy", "eventID": str(uuid.uuid4())}).encode()
            self.send_response(202 if ok else 400)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def caught_up(watcher: wp.Watcher, sim: SimulatedCluster, timeout: float = 60) -> None:
    want = {"machineconfigpools": max(int(o["metadata"]["resourceVersion"])
                                      for o in sim.objects(wp.MCO_API, "MachineConfigPool")),
            "nodes": max(int(o["metadata"]["resourceVersion"]) for o in sim.objects("v1", "Node"))}
    deadline = time.monotonic() + timeout
    while any(int(watcher.reconciled.get(k) or 0) < v for k, v in want.items()):
        if time.monotonic() > deadline:
            raise SystemExit(f"the watcher did not catch up: {watcher.reconciled} < {want}")
        time.sleep(0.005)


def rollout(mco: Upgrades, watcher: wp.Watcher, targets: dict[str, str]) -> tuple[int, float]:
    """All pools' rollouts interleaved step by step; (watch events processed, seconds)."""
    events, start = watcher.stats.watch_events, time.perf_counter()
    rolls = {pool: mco.roll(pool, target, flaps=True) for pool, target in targets.items()}
    while rolls:
        for pool in list(rolls):
            if next(rolls[pool], None) is None:
                del rolls[pool]
    caught_up(watcher, mco.sim)
    return watcher.stats.watch_events - events, time.perf_counter() - start


def decisions_per_second(mco: Upgrades) -> float:
    pool = mco.pool("worker")
    nodes = mco.sim.objects("v1", "Node")
    current, target = pe.configs_of(pool)
    configs = {c: mco.sim.get(wp.MCO_API, "MachineConfig", c) for c in {current, target}}
    state = pe.State(deployed={"worker": pe.KernelSet("x", frozenset(), "bench")})
    rounds, start = 2000, time.perf_counter()
    for _ in range(rounds):
        pe.assess(pool, nodes, configs, state)
    return rounds / (time.perf_counter() - start)


def main() -> None:
    server, received = eventlistener()
    with SimulatedCluster() as sim, tempfile.TemporaryDirectory() as tmp:
        mco = Upgrades(sim)
        for pool, count in POOLS.items():
            mco.add_pool(pool, count, roles=("worker",) if pool == "worker-cnf" else (), prefix=pool)
        versions = kernels.kernel_set([fx.RELEASES["4.16"][1]])
        sim.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cssr-deploy-state", "namespace": NS},
                 "data": {"kernel-versions": json.dumps(versions), "kernel-set-id": kernels.kernel_set_id(versions)}})
        secret = Path(tmp) / "token"
        secret.write_text(TOKEN)
        log = Quiet("bench")
        retry = RetrySettings(attempts=5, wait_initial=0)
        params = wp.Params(pools=("worker", "worker-cnf"), eventlistener_url=f"http://127.0.0.1:{server.server_port}/",
                           secret_file=str(secret), namespace=NS, health_port=0, resync_seconds=5,
                           watch_timeout_seconds=5, confirm_seconds=0)
        watcher = wp.Watcher(params, cluster=Cluster.at(sim.url, log=log, retry=retry), log=log,
                             sender=wp.EventListener(params.url, params.secret_file, retry=retry, log=log)).start()
        try:
            caught_up(watcher, sim)
            runs = [
                ("chrony on worker", {"worker": mco.render("worker", files=("/etc/chrony.conf",))}),
                ("4.16 -> 4.17, all pools", {p: mco.render(p, release="4.17") for p in POOLS}),
                ("realtime on worker-cnf", {"worker-cnf": mco.render("worker-cnf", release="4.17",
                                                                     kernel_type="realtime")}),
            ]
            print(f"pools: {', '.join(f'{p} {n} nodes' for p, n in POOLS.items())}; watched: worker, worker-cnf")
            total_events, total_seconds = 0, 0.0
            for name, targets in runs:
                before = len(received)
                events, seconds = rollout(mco, watcher, targets)
                total_events += events
                total_seconds += seconds
                posts = Counter((b["pool"], b["type"]) for b in received[before:])
                shown = ", ".join(f"{pool} {kind} x{n}" for (pool, kind), n in sorted(posts.items())) or "none"
                print(f"{name:26s} {events:5d} watch events in {seconds:6.2f}s = {events / seconds:7.0f} events/s; "
                      f"POSTs: {shown}")
            print(f"overall: {total_events} watch events in {total_seconds:.2f}s = "
                  f"{total_events / total_seconds:.0f} events/s processed (simulated API included); "
                  f"{watcher.stats.reconciles} decision passes")
            print(f"pure decisions (assess, pool of {POOLS['worker']} among {sum(POOLS.values())} nodes): "
                  f"{decisions_per_second(mco):.0f}/s")
            per_key = Counter((b["pool"], b["type"], b["targetConfig"]) for b in received)
            print(f"POSTs accepted: {len(received)}; most for one idempotency key: {max(per_key.values())}; "
                  f"failed: {watcher.stats.posts_failed}")
            if max(per_key.values()) != 1 or len(received) != 6:
                raise SystemExit("expected exactly 6 POSTs, one per pool per event type per kernel change")
        finally:
            watcher.stop()
            watcher.sender.close()
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
