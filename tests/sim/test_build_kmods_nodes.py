"""build-kmods-nodes (modules-storage=hostpath) against the simulated DaemonSet controller.

The controller (sim/daemonsets.py) makes a pod per target node; a scripted kubelet (sim/pods.Scripted)
ends each init container with the termination message the real containers leave (commit: the
built-kernels JSON, verify: the modules JSON), or with a failure. Through the real client: the
DaemonSet applied once per kernel set, the wait on its status, the per-node report, the failures.
"""

from __future__ import annotations

import json

import pytest

from cssr_tasks import build_kmods_nodes as nodes
from cssr_tasks.errors import CssrError, WaitTimeout
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim import pods
from cssr_tasks.sim import workloads as wl

K416, K417 = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]
VERIFIED = {K416: {"igb_uio": {"sha256": "0123456789abcdef"}, "rte_kni": {"sha256": "fedcba9876543210"}}}
DS = ("apps/v1", "DaemonSet", "cssr-modules", "cssr")


def params(**values: str) -> nodes.Params:
    values = {"modules-storage": "hostpath", "kernels": json.dumps([K416]), "poll-interval": "0.1",
              "nodes-timeout": "10", "init-image": "registry.example/cssr/cssr-init:abc", **values}
    return nodes.Params.from_env({f"PARAM_{k.upper().replace('-', '_')}": v for k, v in values.items()})


@pytest.fixture
def kubelet(sim):
    installed = wl.install(sim, step=0.01)
    runner = pods.Scripted({"commit": json.dumps([K416]), "verify": json.dumps(VERIFIED)})
    installed.daemonsets.runner = runner
    yield runner
    assert installed.errors == []


def test_a_pod_per_target_node_and_the_nodes_report(sim, cluster, log, kubelet):
    result = nodes.run(params(), cluster=cluster, log=log)
    assert result == nodes.Result(built_kernels=[K416], modules=VERIFIED)
    ds = sim.get(*DS)
    assert ds["status"] == {"currentNumberScheduled": 3, "numberMisscheduled": 0, "desiredNumberScheduled": 3,
                            "numberReady": 3, "observedGeneration": 1, "updatedNumberScheduled": 3,
                            "numberAvailable": 3, "numberUnavailable": 0}
    made = sim.objects("v1", "Pod", "cssr")
    assert sorted(p["spec"]["nodeName"] for p in made) == ["worker-0", "worker-1", "worker-2"]
    assert {p["metadata"]["labels"]["pod-template-generation"] for p in made} == {"1"}
    assert sim.get("v1", "ServiceAccount", "privileged", "cssr") is not None  # the pods' account
    template = ds["spec"]["template"]
    assert template["metadata"]["annotations"]["cssr.juniper.net/kernel-set-id"]
    assert template["spec"]["nodeSelector"] == {"node-role.kubernetes.io/worker": ""}
    assert template["spec"]["automountServiceAccountToken"] is False
    assert f"node worker-1: verified {K416}; built {K416}" in log.text
    assert "created DaemonSet cssr/cssr-modules (generation 1" in log.text


def test_an_unchanged_set_writes_nothing_and_reports_nothing_built(sim, cluster, log, kubelet):
    nodes.run(params(), cluster=cluster, log=log)
    ran = list(kubelet.pods)
    sim.clear_requests()
    again = nodes.run(params(), cluster=cluster, log=log)
    assert sim.writes() == []
    assert kubelet.pods == ran  # no pod ran again
    assert again == nodes.Result(built_kernels=[], modules=VERIFIED)
    assert "unchanged DaemonSet cssr/cssr-modules (generation 1" in log.text


def test_a_new_kernel_rolls_every_pod_once(sim, cluster, log, kubelet):
    nodes.run(params(), cluster=cluster, log=log)
    old = {p["metadata"]["name"] for p in sim.objects("v1", "Pod", "cssr")}
    nodes.run(params(kernels=json.dumps([K416, K417])), cluster=cluster, log=log)
    ds = sim.get(*DS)
    assert ds["metadata"]["generation"] == 2 and ds["status"]["updatedNumberScheduled"] == 3
    now = sim.objects("v1", "Pod", "cssr")
    assert not old & {p["metadata"]["name"] for p in now} and len(now) == 3
    assert {p["metadata"]["labels"]["pod-template-generation"] for p in now} == {"2"}
    assert K417 in json.dumps(ds["spec"]["template"]["spec"]["initContainers"])


def test_a_node_that_joins_the_target_set_later_gets_its_pod(sim, cluster, log, kubelet):
    for name in ("worker-0", "worker-1"):
        cluster.patch("v1", "nodes", name, {"metadata": {"labels": {"cssr": "router"}}})
    nodes.run(params(**{"node-selector": "cssr=router"}), cluster=cluster, log=log)
    assert sim.get(*DS)["status"]["desiredNumberScheduled"] == 2
    cluster.patch("v1", "nodes", "worker-2", {"metadata": {"labels": {"cssr": "router"}}})  # no pipeline run
    placed = sorted(p["spec"]["nodeName"] for p in sim.objects("v1", "Pod", "cssr"))
    assert placed == ["worker-0", "worker-1", "worker-2"]
    again = nodes.run(params(**{"node-selector": "cssr=router"}), cluster=cluster, log=log)
    assert sim.get(*DS)["metadata"]["generation"] == 1 and again.modules == VERIFIED
    assert "node worker-2: verified" in log.text


def test_a_failed_build_times_out_naming_the_node_the_container_and_the_reason(sim, cluster, log, kubelet):
    kubelet.fail["commit"] = "...\nerror: kernel x: the builder exited with status 2"
    with pytest.raises(WaitTimeout) as e:
        nodes.run(params(**{"nodes-timeout": "1"}), cluster=cluster, log=log)
    message = str(e.value)
    assert "0 of 3 node(s) ready" in message
    assert "worker-0: init container commit CrashLoopBackOff (last exit 1: error: kernel x: the builder exited " \
           "with status 2)" in message
    assert "oc logs -n cssr POD -c CONTAINER" in message and "\n" not in message


def test_no_matching_node_is_a_clear_error(sim, cluster, log, kubelet):
    with pytest.raises(CssrError, match="schedules no pod; no node matches node-selector='cssr=nowhere'"):
        nodes.run(params(**{"node-selector": "cssr=nowhere"}), cluster=cluster, log=log)


def test_pvc_mode_asks_nothing_of_the_cluster_and_writes_no_result(sim, cluster, log, run_cli):
    sim.clear_requests()
    assert nodes.run(params(**{"modules-storage": "pvc"}), cluster=cluster, log=log) == nodes.Result(None, None)
    assert sim.requests == []
    # as the Task's last step runs it: no kubeconfig needed, and no result file to overwrite the verify step's
    done = run_cli(["build-kmods-nodes"], {"PARAM_KERNELS": json.dumps([K416])})
    assert (done.code, done.results) == (0, {}), done.err


@pytest.mark.parametrize(("values", "expected"), [
    ({"PARAM_MODULES_STORAGE": "hostPath"}, "param modules-storage='hostPath' must be one of pvc, hostpath"),
    ({"PARAM_MODULES_STORAGE": "hostpath", "PARAM_NODE_SELECTOR": "a in (b,c)"},
     "must hold key=value terms only with modules-storage=hostpath"),
])
def test_bad_params_fail_with_one_line_and_exit_2(sim, run_cli, values, expected):
    env = {"PARAM_KERNELS": json.dumps([K416]), "PARAM_INIT_IMAGE": "registry.example/cssr/cssr-init:abc", **values}
    sim.clear_requests()
    done = run_cli(["build-kmods-nodes"], env, sim=sim)
    assert done.code == 2
    assert expected in done.err or expected in done.out
    assert len([line for line in done.out.splitlines() + done.err.splitlines() if "error" in line]) == 1
    assert done.results == {}
    assert sim.writes() == []
