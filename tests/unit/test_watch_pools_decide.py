"""watch-pools' pure decisions: params, which nodes a pool has, when it has settled, which events
a pool calls for (and why not), the last deployed kernel set, and the pruning of sent records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cssr_tasks import kernels
from cssr_tasks import pool_events as pe
from cssr_tasks import watch_pools as wp
from cssr_tasks.errors import ConfigError
from cssr_tasks.log import Log
from cssr_tasks.sim import fixtures as fx

K416, RT416 = fx.RELEASES["4.16"][1], fx.RELEASES["4.16"][2]
K417, RT417 = fx.RELEASES["4.17"][1], fx.RELEASES["4.17"][2]
OLD, NEW, CHRONY, RT = (f"rendered-worker-{c * 32}" for c in "abcd")
IMAGE416, IMAGE417 = "quay.io/rhcos@sha256:" + "4" * 64, "quay.io/rhcos@sha256:" + "7" * 64
CONFIGS: dict[str, dict[str, Any] | None] = {
    OLD: {"spec": {"osImageURL": IMAGE416, "kernelType": "default"}},
    NEW: {"spec": {"osImageURL": IMAGE417, "kernelType": ""}},
    CHRONY: {"spec": {"osImageURL": IMAGE416}},
    RT: {"spec": {"osImageURL": IMAGE416, "kernelType": "realtime"}},
}


def nodes(kernel: str = K416, config: str = OLD, count: int = 3, **changes: str) -> list[dict[str, Any]]:
    made = fx.workers(count, config=config)
    for node in made:
        node["status"]["nodeInfo"]["kernelVersion"] = kernel
        node["metadata"]["annotations"].update(changes)
    return made


def pool(current: str = OLD, target: str | None = None, *, updated: int = 3, updating: bool = False,
         **conditions: bool) -> dict[str, Any]:
    made = fx.pool("worker", machine_count=3, config=current, target=target or current, updating=updating,
                   updated_count=updated)
    for condition in made["status"]["conditions"]:
        if condition["type"] in conditions:
            condition["status"] = "True" if conditions[condition["type"]] else "False"
    return made


def deployed(*versions: str) -> dict[str, pe.KernelSet]:
    return {"worker": pe.KernelSet(kernels.kernel_set_id(versions), frozenset(versions), "cssr-deploy-state")}


def sent(event: pe.Event, config: str | None = None) -> dict[str, dict[str, Any]]:
    key = event.key if config is None else f"{event.type}.{event.pool}.{config}"
    return {key: {"pool": event.pool, "type": event.type, "config": config or event.target_config,
                  "kernel": event.kernel, "eventID": "e1"}}


def assess(p: dict[str, Any], n: list[dict[str, Any]], state: pe.State | None = None) -> pe.Assessment:
    return pe.assess(p, n, CONFIGS, state or pe.State(deployed=deployed(K416)))


# -- params --

@pytest.mark.parametrize(("value", "pools"), [
    ("worker", ("worker",)),
    ("worker, worker-cnf", ("worker", "worker-cnf")),
    ('["worker-cnf", "worker-rt"]', ("worker-cnf", "worker-rt")),
    ("", ("worker",)),
], ids=["one", "comma-list", "json", "default"])
def test_pools_param(value, pools):
    assert wp.Params.from_env({"PARAM_POOLS": value, "PARAM_NAMESPACE": "ns"}).pools == pools


def test_params_defaults_and_the_namespace_file(tmp_path):
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("cssr-deploy\n")
    params = wp.Params.from_env({}, namespace_file=str(namespace_file))
    assert params.namespace == params.pipeline_namespace == "cssr-deploy"
    assert params.url == "http://el-cssr-deploy.cssr-deploy.svc.cluster.local:8080"
    assert params.secret_file == "/var/run/secrets/cssr-trigger-secret/token"
    assert (params.state_configmap, params.deploy_state_configmap) == ("cssr-watch-pools-state", "cssr-deploy-state")


def test_every_bad_param_is_named_at_once(tmp_path):
    with pytest.raises(ConfigError) as e:
        wp.Params.from_env({"PARAM_POOLS": '["Worker"]', "PARAM_HEALTH_PORT": "70000", "PARAM_RESYNC_SECONDS": "0",
                            "PARAM_EVENTLISTENER_URL": "ftp://x"}, namespace_file=str(tmp_path / "none"))
    for part in ("pools", "health-port", "resync-seconds", "eventlistener-url", "PARAM_NAMESPACE"):
        assert part in str(e.value)


# -- membership and settling --

@pytest.mark.parametrize(("name", "pool"), [
    ("rendered-worker-" + "a" * 32, "worker"),
    ("rendered-worker-cnf-" + "a" * 32, "worker-cnf"),
    ("worker", None),
    ("rendered-", None),
], ids=["worker", "hyphenated-pool", "not-rendered", "empty"])
def test_pool_of_config(name, pool):
    assert pe.pool_of_config(name) == pool


def test_a_worker_cnf_node_is_not_a_worker():
    cnf = fx.node("cnf-0", kernel=RT416, rhcos="x", role="worker-cnf", labels={"node-role.kubernetes.io/worker": ""},
                  config="rendered-worker-cnf-" + "a" * 32)
    bare = fx.node("new-0", kernel=K416, rhcos="x", role="worker")
    del bare["metadata"]["annotations"][pe.CURRENT_CONFIG], bare["metadata"]["annotations"][pe.DESIRED_CONFIG]
    members = pe.pool_nodes(pool(), nodes() + [cnf, bare] + fx.workers(1, prefix="master", role="master"))
    assert sorted(n["metadata"]["name"] for n in members) == ["new-0", "worker-0", "worker-1", "worker-2"]


@pytest.mark.parametrize(("p", "n", "reason"), [
    (pool(), nodes(), None),
    (pool(updating=True), nodes(), "not settled (Updated=False, Updating=True, Degraded=False)"),
    (pool(Updated=True, Degraded=True), nodes(), "Degraded=True"),
    (pool(updated=2), nodes(), "2/3 machines updated"),
    (pool(OLD, NEW, Updated=True), nodes(), f"target {NEW} is not yet current"),
    (pool(), nodes(**{pe.MCO_STATE: "Working"}), "node worker-0 is Working"),
    (pool(), nodes(**{pe.DESIRED_CONFIG: NEW}), "node worker-0 is Done"),
    (pool(), nodes(kernel=""), "node worker-0 reports no kernel version"),
    (pool(), [], "no node matches"),
], ids=["settled", "updating", "degraded", "counts", "configs-differ", "node-working", "node-desires-another",
        "no-kernel", "no-nodes"])
def test_settled(p, n, reason):
    found = pe.settled(p, pe.pool_nodes(p, n))
    assert found is None if reason is None else reason in (found or "")


# -- pool-updating --

@pytest.mark.parametrize(("target", "kernel_type", "image"), [
    (NEW, "default", IMAGE417),
    (RT, "realtime", IMAGE416),
], ids=["new-rhcos", "realtime"])
def test_an_update_to_another_kernel_is_pool_updating(target, kernel_type, image):
    result = assess(pool(OLD, target, updating=True, updated=0), nodes())
    [event] = result.events
    assert (event.type, event.current_config, event.target_config) == (pe.POOL_UPDATING, OLD, target)
    assert (event.kernel_type, event.os_image_url, event.kernel_versions) == (kernel_type, image, (K416,))
    assert result.reason.endswith(": pool-updating")


def test_a_change_that_keeps_the_kernel_sends_nothing():
    result = assess(pool(OLD, CHRONY, updating=True, updated=1), nodes())
    assert result.events == []
    assert "the kernel stays: no event" in result.reason


def test_an_unreadable_rendered_config_waits():
    result = pe.assess(pool(OLD, NEW, updating=True), nodes(), {OLD: CONFIGS[OLD]}, pe.State())
    assert result.events == []
    assert f"waiting to read MachineConfig {NEW}" in result.reason


def test_pool_updating_goes_once_per_key_and_once_per_kernel():
    first = assess(pool(OLD, NEW, updating=True), nodes()).events[0]
    again = assess(pool(OLD, NEW, updating=True), nodes(), pe.State(sent=sent(first))).events
    assert again == []
    # a chrony change on top of the upgrade makes another target with the same kernel: no news
    newer = "rendered-worker-" + "e" * 32
    configs = {**CONFIGS, newer: {"spec": {"osImageURL": IMAGE417, "kernelType": "default"}}}
    result = pe.assess(pool(OLD, newer, updating=True), nodes(), configs, pe.State(sent=sent(first)))
    assert result.events == []
    assert f"same kernel already sent with {NEW}" in result.reason


# -- kernel-changed --

def test_a_settled_pool_on_a_new_kernel_is_kernel_changed():
    result = assess(pool(NEW), nodes(K417, NEW))
    [event] = result.events
    assert (event.type, event.target_config, event.kernel_versions) == (pe.KERNEL_CHANGED, NEW, (K417,))
    assert event.kernel_set_id == kernels.kernel_set_id([K417])
    assert (event.os_image_url, event.kernel_type) == (IMAGE417, "default")


@pytest.mark.parametrize(("n", "deployed_set"), [
    (nodes(K416), deployed(K416)),
    (nodes(K417, NEW), deployed(K416, K417)),  # the pool-updating run built the new kernel already
    (nodes(RT416, RT), deployed(K416, RT416)),  # detect-kernel adds the standard upgrade target to RT sets
], ids=["same", "built-early", "realtime-with-upgrade-target"])
def test_a_covered_set_sends_nothing(n, deployed_set):
    config = n[0]["metadata"]["annotations"][pe.CURRENT_CONFIG]
    result = assess(pool(config), n, pe.State(deployed=deployed_set))
    assert result.events == []
    assert "covered by the last deployment" in result.reason


def test_an_id_alone_must_match_exactly():
    only_id = {"worker": pe.KernelSet(kernels.kernel_set_id([K416, K417]), None, "cssr-deploy-state")}
    assert assess(pool(NEW), nodes(K417, NEW), pe.State(deployed=only_id)).events != []
    same = {"worker": pe.KernelSet(kernels.kernel_set_id([K417]), None, "cssr-deploy-state")}
    assert assess(pool(NEW), nodes(K417, NEW), pe.State(deployed=same)).events == []


def test_no_deployment_recorded_sends_nothing():
    result = assess(pool(NEW), nodes(K417, NEW), pe.State())
    assert result.events == []
    assert "no deployment recorded yet" in result.reason


def test_kernel_changed_goes_once_per_key_and_once_per_kernel_set():
    first = assess(pool(NEW), nodes(K417, NEW)).events[0]
    state = pe.State(sent=sent(first), deployed=deployed(K416))  # the run failed: nothing recorded
    assert assess(pool(NEW), nodes(K417, NEW), state).events == []
    # a chrony change settles on another config with the same kernels: not a second kernel change
    later = "rendered-worker-" + "f" * 32
    configs = {**CONFIGS, later: CONFIGS[NEW]}
    result = pe.assess(pool(later), nodes(K417, later), configs, state)
    assert result.events == []
    assert "same kernel already sent" in result.reason


def test_the_watcher_ignores_pools_it_was_not_given():
    params = wp.Params(pools=("worker-cnf",), namespace="ns")
    watcher = wp.Watcher(params, cluster=None, log=Log("test"), sender=None)  # type: ignore[arg-type]
    assert watcher.decide(pool(NEW), nodes(K417, NEW), CONFIGS, pe.State(deployed=deployed(K416))) == []
    watcher.params = wp.Params(pools=("worker",), namespace="ns")
    assert len(watcher.decide(pool(NEW), nodes(K417, NEW), CONFIGS, pe.State(deployed=deployed(K416)))) == 1


# -- the last deployment and the records --

def test_deployed_sets_prefer_the_pools_own_keys_then_the_global_ones_then_the_baseline():
    state = {"worker.kernel-versions": json.dumps([K417]), "kernel-versions": json.dumps([K416]),
             "kernel-set-id": kernels.kernel_set_id([K416])}
    baseline = {"baseline.worker-rt": json.dumps({"kernelVersions": [RT416]})}
    found = pe.deployed_sets(("worker", "worker-cnf", "worker-rt"), state, baseline)
    assert found["worker"].versions == {K417}
    assert found["worker-cnf"].versions == found["worker-rt"].versions == {K416}
    own = pe.deployed_sets(("worker", "worker-rt"), {"worker.kernel-versions": json.dumps([K417])}, baseline)
    assert own["worker-rt"] == pe.KernelSet(kernels.kernel_set_id([RT416]), frozenset([RT416]), "watcher baseline")
    assert pe.deployed_sets(("worker",), None, baseline) == {}
    only_id = pe.deployed_sets(("worker",), {"kernel-set-id": "0123456789ab", "kernel-versions": "not json"}, {})
    assert only_id["worker"] == pe.KernelSet("0123456789ab", None, "cssr-deploy-state")


def test_prune_keeps_the_newest_records_of_each_pool_and_type():
    data = {f"{t}.{p}.rendered-{p}-{i:032x}": json.dumps({"pool": p, "type": t, "sentAt": f"2026-01-{i + 1:02d}"})
            for t in pe.EVENT_TYPES for p in ("worker", "worker-cnf") for i in range(5)}
    data["baseline.worker"] = "{}"
    kept = pe.prune(data, keep=2)
    assert len(kept) == 2 * 2 * 2 + 1
    assert "baseline.worker" in kept
    assert f"pool-updating.worker.rendered-worker-{4:032x}" in kept
    assert f"pool-updating.worker.rendered-worker-{2:032x}" not in kept


def test_the_event_body_and_keys():
    event = pe.Event(pe.POOL_UPDATING, "worker", OLD, NEW, IMAGE417, "default", "0123456789ab", (K416,))
    assert event.key == f"pool-updating.worker.{NEW}"
    assert len(event.idempotency_key) == 32 and int(event.idempotency_key, 16) >= 0
    body = event.body()
    assert body["idempotencyKey"] == event.idempotency_key
    assert (body["type"], body["pool"], body["currentConfig"], body["targetConfig"]) == (pe.POOL_UPDATING, "worker",
                                                                                         OLD, NEW)
    assert body["kernelVersions"] == [K416]
    assert all(isinstance(v, (str, list)) for v in body.values())  # no numbers: CEL reads them as doubles
