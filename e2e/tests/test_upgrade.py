"""Stage D, the upgrade: a scripted cluster upgrade re-runs cssr-deploy through the real trigger.

The MCO stand-in (harness/mco.py) rolls pool worker-du of kubelet-less stand-in nodes (real Debian
kernel trees, harness/world_d.py) three times: to RHCOS 4.17 (a new osImageURL, kernel 6.1.0-56 ->
6.1.0-57), then a chrony-only MachineConfig (same osImageURL and kernelType), then kernelType
realtime (6.1.0-57-rt). The pool watcher runs as the Deployment of triggers/watcher.yaml and POSTs
to the real EventListener, whose real CEL interceptor checks the token with compareSecret and whose
TriggerTemplate creates the PipelineRuns on real Tekton. Each rollout runs in a thread, as the MCO
runs beside everything else; the first node reports the target's kernel 150 s after the pool's
target changed (a real drain and reboot takes longer), so that the test can tell whether the target
kernel's modules were verified before it.

What the runs cannot do here is Stage C's: the router pods target the stand-in nodes and stay
Pending, so every run ends Failed at apply-manifests' rollout, and no run records a kernel set; that
is why a settled pool's new kernel also gives a kernel-changed event.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import triggers_world
import upgrade_world as uw
import yaml
from e2e.harness import mco, operators, world_d
from e2e.harness.layout import Layout

from cssr_tasks import pool_events
from cssr_tasks.cluster import Cluster

from conftest import ROOT, wait_for

FIRST_NODE_AFTER = 150.0
RUN_TIMEOUT = 900.0


@pytest.fixture(scope="module")
def world(layout: Layout, admin: Cluster, kubectl: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[uw.World]:
    namespace = f"{uw.NAMESPACE_PREFIX}{int(time.time())}"
    uw.clean_earlier(admin, kubectl, namespace)
    made = uw.install(layout, admin, kubectl, tmp_path_factory.mktemp("overlay-d"), namespace)
    try:
        wait_for("the EventListener's Deployment to be available", lambda: uw.available(
            admin, namespace, uw.EVENTLISTENER_DEPLOYMENT), timeout=240, interval=2)
        wait_for("the pool watcher's Deployment to be available", lambda: uw.available(
            admin, namespace, uw.WATCHER), timeout=240, interval=2)
        yield made
    finally:
        made.operators.stop()


def start_first_run(admin: Cluster, namespace: str) -> str:
    """The first deployment, as a user starts it with the settings' defaults (tests/cluster/pipelinerun.yaml)."""
    run = yaml.safe_load((ROOT / "tests/cluster/pipelinerun.yaml").read_text())
    run["metadata"]["namespace"] = namespace
    return str(admin.create(run)["metadata"]["name"])


def wait_run(admin: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return wait_for(f"PipelineRun {name} to finish", lambda: next(
        (r for r in uw.runs(admin, namespace) if r["metadata"]["name"] == name and uw.finished(r)), None),
        timeout=RUN_TIMEOUT, interval=3)


def run_of(admin: Cluster, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
    return wait_for(f"the PipelineRun of eventID {event['eventID']}", lambda: next(iter(admin.list(
        "tekton.dev/v1", "pipelineruns", namespace=namespace,
        label_selector=f"{uw.EVENT_ID_LABEL}={event['eventID']}")), None), timeout=60, interval=1)


def build_kmods(admin: Cluster, namespace: str, run: str) -> dict[str, Any]:
    """The run's finished build-kmods TaskRun; fails at once, with the run's message, when the run
    ended without one."""
    def done() -> dict[str, Any] | None:
        found = next((t for t in admin.list("tekton.dev/v1", "taskruns", namespace=namespace,
                                            label_selector=f"tekton.dev/pipelineRun={run},"
                                                           "tekton.dev/pipelineTask=build-kmods")
                      if (t.get("status") or {}).get("completionTime")), None)
        if found is None:
            pipelinerun = admin.get("tekton.dev/v1", "pipelineruns", run, namespace)
            assert not uw.finished(pipelinerun), f"{run} ended before build-kmods ran: " \
                f"{pipelinerun['status']['conditions'][0].get('message')}"
        return found
    found: dict[str, Any] = wait_for(f"build-kmods of {run} to finish", done, timeout=RUN_TIMEOUT, interval=2)
    return found


def step_finished(taskrun: dict[str, Any], step: str) -> float:
    [state] = [s for s in taskrun["status"].get("steps") or [] if s.get("name") == step]
    return uw.stamp(state["terminated"]["finishedAt"])


def router(admin: Cluster, namespace: str) -> tuple[str, str]:
    """The router StatefulSet's update revision and its pod's uid: what a restart would change."""
    sts = admin.get("apps/v1", "statefulsets", "cssr", namespace)
    pod = admin.get("v1", "pods", "cssr-0", namespace)
    return str(sts["status"].get("updateRevision")), str(pod["metadata"]["uid"])


def roll(world_: uw.World, target: str, first_node_after: float) -> tuple[threading.Thread, mco.Rollout]:
    rollout = mco.Rollout(world_.mco, uw.POOL, target, first_node_after=first_node_after)
    thread = threading.Thread(target=rollout.run, name=f"mco-standin-{target[-8:]}", daemon=True)
    thread.start()
    return thread, rollout


def upgrade_step(world_: uw.World, admin: Cluster, kubectl: Any, label: str, target: str, *,
                 restart_watcher: bool = False) -> dict[str, Any]:
    """One kernel-changing rollout: the pool-updating event, its run, the watcher restarted mid-way if
    asked, the settled pool's kernel-changed event and its run, with the timeline of each."""
    ns = world_.namespace
    before = len(uw.sent_events(admin, ns))
    thread, rollout = roll(world_, target, FIRST_NODE_AFTER)
    updating = uw.wait_event(admin, ns, "pool-updating", before)
    updating_run = run_of(admin, ns, updating)
    restarted = ""
    if restart_watcher:
        [pod] = admin.list("v1", "pods", namespace=ns, label_selector=f"app.kubernetes.io/name={uw.WATCHER}")
        kubectl("-n", ns, "delete", "pod", pod["metadata"]["name"], "--wait=false")
        wait_for("a new pool watcher pod to be Ready", lambda: any(
            p["metadata"]["name"] != pod["metadata"]["name"] and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or [])
            for p in admin.list("v1", "pods", namespace=ns, label_selector=f"app.kubernetes.io/name={uw.WATCHER}")),
            timeout=120, interval=1)
        restarted = pod["metadata"]["name"]
    kmods = build_kmods(admin, ns, updating_run["metadata"]["name"])
    thread.join(timeout=FIRST_NODE_AFTER + 300)
    assert not thread.is_alive(), f"the MCO stand-in's rollout to {target} did not end"
    changed = uw.wait_event(admin, ns, "kernel-changed", before)
    changed_run = run_of(admin, ns, changed)
    first_moved = next(t["at"] for t in rollout.timeline if "updated" in t["step"])
    return {"label": label, "target": target, "rollout": rollout.timeline, "restarted_watcher": restarted,
            "pool-updating": {"event": updating, "run": updating_run["metadata"]["name"],
                              "sent": uw.stamp(updating["sentAt"]),
                              "created": uw.stamp(updating_run["metadata"]["creationTimestamp"]),
                              "verified": step_finished(kmods, "verify"), "first_node_moved": first_moved,
                              "build_kmods": kmods},
            "kernel-changed": {"event": changed, "run": changed_run["metadata"]["name"],
                               "sent": uw.stamp(changed["sentAt"]),
                               "created": uw.stamp(changed_run["metadata"]["creationTimestamp"])}}


@pytest.fixture(scope="module")
def scripted(world: uw.World, admin: Cluster, kubectl: Any, layout: Layout) -> dict[str, Any]:
    ns = world.namespace
    first = wait_run(admin, ns, start_first_run(admin, ns))
    facts: dict[str, Any] = {"first_run": first["metadata"]["name"], "router_before": router(admin, ns)}

    # The CVO moves the Driver Toolkit stream to the new release before the MCO rolls the pool.
    mco_ = world.mco
    operators.world(admin, world_d.driver_toolkit(world.dtk_digests, latest="4.17"))
    facts["upgrade"] = upgrade_step(world, admin, kubectl, "upgrade to 4.17",
                                    mco_.render(uw.POOL, release="4.17"), restart_watcher=True)
    wait_run(admin, ns, facts["upgrade"]["pool-updating"]["run"])
    facts["router_after_upgrade"] = router(admin, ns)

    # A MachineConfig that changes a file only: the pool updates, the kernel stays.
    events_before = len(uw.sent_events(admin, ns))
    runs_before = len(uw.runs(admin, ns))
    chrony = mco_.render(uw.POOL, release="4.17", files=("/etc/chrony.conf",))
    thread, rollout = roll(world, chrony, first_node_after=5.0)
    thread.join(timeout=120)
    wait_for("the watcher to judge the chrony change", lambda: f"-> {chrony}; same osImageURL and kernelType"
             in kubectl("-n", ns, "logs", f"deploy/{uw.WATCHER}").stdout, timeout=60, interval=2)
    facts["chrony"] = {"target": chrony, "rollout": rollout.timeline,
                       "events": len(uw.sent_events(admin, ns)) - events_before,
                       "runs": len(uw.runs(admin, ns)) - runs_before}

    facts["realtime"] = upgrade_step(world, admin, kubectl, "switch to the realtime kernel",
                                     mco_.render(uw.POOL, release="4.17", kernel_type="realtime"))
    for step in ("upgrade", "realtime"):
        for kind in ("pool-updating", "kernel-changed"):
            wait_run(admin, ns, facts[step][kind]["run"])
    facts["router_after_all"] = router(admin, ns)
    facts["events"] = uw.sent_events(admin, ns)
    facts["runs"] = uw.runs(admin, ns)
    facts["rejected"] = rejected_events(layout, kubectl, world)
    write_timeline(layout, facts)
    return facts


def rejected_events(layout: Layout, kubectl: Any, world_: uw.World) -> dict[str, Any]:
    """Events the watcher never sends, POSTed from a pod to the same EventListener: the sink's
    verdict on each, and the PipelineRuns each made."""
    body = pool_events.Event(pool_events.POOL_UPDATING, uw.POOL, "rendered-worker-du-" + "1" * 32,
                             "rendered-worker-du-" + "2" * 32, "quay.io/rhcos@sha256:" + "a" * 64, "default",
                             "0123456789ab", (world_.releases["4.17"][1],)).body()
    token = {"X-Cssr-Trigger-Token": world_.secret}
    cases = {"wrong token": (body, {"X-Cssr-Trigger-Token": "0" * 64}),
             "unknown pool": ({**body, "pool": "master", "targetConfig": "rendered-master-" + "2" * 32}, token),
             "malformed key": ({**body, "idempotencyKey": "not-32-hex"}, token)}
    triggers_world.start_poster(layout, kubectl, world_.namespace)
    found = {}
    for name, (event, headers) in cases.items():
        answer = triggers_world.post_event(kubectl, world_.namespace, event, headers)
        verdict, _ = triggers_world.verdict(kubectl, world_.namespace, answer["eventID"])
        runs = triggers_world.pipelineruns_by_eventid(kubectl, world_.namespace, answer["eventID"])
        found[name] = (verdict, len(runs))
    return found


def write_timeline(layout: Layout, facts: dict[str, Any]) -> None:
    """out/e2e/upgrade.json, which the harness puts into report.json's stage D."""
    def entry(step: dict[str, Any]) -> dict[str, Any]:
        updating, changed = step["pool-updating"], step["kernel-changed"]
        t0 = updating["sent"]
        return {"target": step["target"], "watcher_restarted": bool(step["restarted_watcher"]),
                "pool_updating": {"pipelinerun": updating["run"], "event_id": updating["event"]["eventID"],
                                  "event_sent": updating["event"]["sentAt"],
                                  "pipelinerun_created_after_s": round(updating["created"] - t0, 1),
                                  "target_modules_verified_after_s": round(updating["verified"] - t0, 1),
                                  "first_node_moved_after_s": round(updating["first_node_moved"] - t0, 1),
                                  "verified_before_first_node_by_s": round(
                                      updating["first_node_moved"] - updating["verified"], 1)},
                "kernel_changed": {"pipelinerun": changed["run"], "event_id": changed["event"]["eventID"],
                                   "event_sent": changed["event"]["sentAt"],
                                   "pipelinerun_created_after_s": round(changed["created"] - changed["sent"], 1)},
                "rollout": [{"step": t["step"], "seconds": t["seconds"]} for t in step["rollout"]]}
    document = {"upgrade": entry(facts["upgrade"]), "realtime": entry(facts["realtime"]),
                "chrony": {"target": facts["chrony"]["target"], "events": facts["chrony"]["events"],
                           "pipelineruns": facts["chrony"]["runs"]},
                "events_sent": len(facts["events"])}
    layout.out.mkdir(parents=True, exist_ok=True)
    (layout.out / "upgrade.json").write_text(json.dumps(document, indent=2) + "\n")


def test_each_event_of_the_upgrade_made_exactly_one_pipelinerun_with_its_event_id(scripted: dict[str, Any]) -> None:
    events = scripted["events"]
    assert [e["type"] for e in events] == ["pool-updating", "kernel-changed"] * 2, events
    for event in events:
        assert event["eventID"], event
        mine = [r for r in scripted["runs"] if r["metadata"]["labels"].get(uw.EVENT_ID_LABEL) == event["eventID"]]
        assert len(mine) == 1, (event, [r["metadata"]["name"] for r in mine])
        labels = mine[0]["metadata"]["labels"]
        assert labels[uw.KEY_LABEL] == event["idempotencyKey"]
        assert labels["cssr-deploy/event-type"] == event["type"]
        assert labels["cssr-deploy/pool"] == uw.POOL
    triggered = [r for r in scripted["runs"] if uw.EVENT_ID_LABEL in r["metadata"]["labels"]]
    assert len(triggered) == len(events), [r["metadata"]["name"] for r in triggered]


def test_events_the_filter_rejects_make_no_pipelinerun(scripted: dict[str, Any]) -> None:
    assert scripted["rejected"] == {name: ("rejected", 0) for name in ("wrong token", "unknown pool",
                                                                       "malformed key")}, scripted["rejected"]


def test_a_watcher_restart_mid_upgrade_sends_nothing_twice(scripted: dict[str, Any]) -> None:
    assert scripted["upgrade"]["restarted_watcher"]
    keys = [e["idempotencyKey"] for e in scripted["events"]]
    assert len(keys) == len(set(keys))
    per_key: dict[str, int] = {}
    for run in scripted["runs"]:
        key = run["metadata"]["labels"].get(uw.KEY_LABEL)
        if key:
            per_key[key] = per_key.get(key, 0) + 1
    assert per_key and set(per_key.values()) == {1}, per_key


def test_a_chrony_only_change_starts_no_run(scripted: dict[str, Any]) -> None:
    chrony = scripted["chrony"]
    assert any("settled" in t["step"] for t in chrony["rollout"])
    assert (chrony["events"], chrony["runs"]) == (0, 0)


@pytest.mark.parametrize("step", ["upgrade", "realtime"])
def test_target_modules_are_verified_before_the_first_node_moves(scripted: dict[str, Any], world: uw.World,
                                                                 step: str) -> None:
    updating = scripted[step]["pool-updating"]
    _, kernel, rt = world.releases["4.17"]
    target = rt if step == "realtime" else kernel
    results = {r["name"]: r["value"] for r in updating["build_kmods"]["status"].get("results") or []}
    assert json.loads(results["built-kernels"]) == [target], results
    assert updating["build_kmods"]["status"]["conditions"][0]["status"] == "True"
    # The watcher records sentAt just after the EventListener's 202, and creationTimestamp has whole
    # seconds: the PipelineRun may carry a time up to a second before it.
    assert updating["sent"] - 1.0 <= updating["created"] <= updating["verified"] < updating["first_node_moved"], \
        updating


def test_the_pool_updating_runs_restart_no_router_pod(scripted: dict[str, Any]) -> None:
    assert scripted["router_before"] == scripted["router_after_upgrade"] == scripted["router_after_all"]
