"""preflight against the simulated OpenShift and a registry served by pytest-httpserver: every check, PASS and FAIL.

Each check prints one line; the step raises one error listing every failure with its fix, after
all checks ran.
"""

from __future__ import annotations

import socket

import pytest

from cssr_tasks import preflight
from cssr_tasks.errors import ConfigError, CssrError
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim import operators

RHCOS = fx.RELEASES["4.16"][0]
SRIOV_NS = "openshift-sriov-network-operator"
SRIOV_API = "sriovnetwork.openshift.io/v1"
CRD_API = "apiextensions.k8s.io/v1"


def params(**env: str) -> preflight.Params:
    env.setdefault("image_repository", "")
    return preflight.Params.from_env({f"PARAM_{k.upper()}": v for k, v in env.items()})


@pytest.fixture
def ready(sim):
    operators.install(sim)
    return sim


def failing(cluster, log, **env: str) -> str:
    with pytest.raises(CssrError) as caught:
        preflight.run(params(**env), cluster=cluster, log=log)
    return str(caught.value)


def test_a_ready_cluster_passes_every_check(ready, cluster, log):
    result = preflight.run(params(), cluster=cluster, log=log)
    assert result == preflight.Result(ready=True)
    assert "FAIL" not in log.text
    for line in ("PASS  CRD sriovnetworknodepolicies.sriovnetwork.openshift.io: installed, serves v1",
                 "PASS  target nodes: 3 Ready node(s) match 'node-role.kubernetes.io/worker=': "
                 "worker-0, worker-1, worker-2",
                 "PASS  MachineConfigPool worker: settled: 3 of 3 machines on rendered-worker-",
                 "PASS  hugepages hugepages-2Mi: room for 12 pod(s) of 4Gi, need 1",
                 "PASS  SR-IOV PFs: ens6f0np0, ens6f1np1 present on all 3 target node(s)",
                 "PASS  SR-IOV config daemon: synced on the target nodes",
                 "SKIP  registry: image-repository is empty"):
        assert line in log.text
    assert all(r.verb in ("get", "list") for r in ready.requests)


def test_every_check_runs_and_the_error_lists_each_failure_with_its_fix(ready, cluster, log):
    for plural in ("sriovnetworknodepolicies", "sriovnetworks", "sriovnetworknodestates"):
        ready.delete(CRD_API, "CustomResourceDefinition", f"{plural}.sriovnetwork.openshift.io")
    ready.put(fx.pool("worker", machine_count=3, config=fx.rendered("worker", RHCOS), updating=True,
                      updated_count=1))
    message = failing(cluster, log, hugepages_method="none", hugepages_request="32Gi")
    assert "5 check(s) failed" in message  # three SR-IOV CRDs, the pool, the hugepages
    assert "CRD sriovnetworknodepolicies.sriovnetwork.openshift.io: not installed; fix: install the SR-IOV " \
           "Network Operator from OperatorHub" in message
    assert "MachineConfigPool worker: updating: 1 of 3 machines on config" in message
    assert "set allow-updating=true" in message
    assert "hugepages hugepages-2Mi: room for 0 pod(s) of 32Gi, need 1" in message
    assert "fix: configure hugepages on the target nodes" in message
    # the checks after the failures still ran
    assert "PASS  target nodes" in log.text
    assert "SKIP  SR-IOV PFs: the SR-IOV operator is missing" in log.text


@pytest.mark.parametrize(("method", "checked"), [
    ("performanceprofile", True), ("machineconfig", False), ("none", False),
], ids=["performanceprofile", "machineconfig", "none"])
def test_the_node_tuning_operator_is_required_only_for_a_performance_profile(ready, cluster, log, method, checked):
    ready.delete(CRD_API, "CustomResourceDefinition", "performanceprofiles.performance.openshift.io")
    asked = lambda: any(r.name == "performanceprofiles.performance.openshift.io" for r in ready.requests)  # noqa: E731
    if checked:
        message = failing(cluster, log, hugepages_method=method)
        assert "performanceprofiles.performance.openshift.io: not installed; fix: hugepages-method=performance" \
               "profile needs the Node Tuning Operator" in message
    else:
        assert preflight.run(params(hugepages_method=method), cluster=cluster, log=log).ready
    assert asked() is checked


def test_a_crd_that_is_not_established_fails(ready, cluster, log):
    crd = ready.get(CRD_API, "CustomResourceDefinition", "sriovnetworks.sriovnetwork.openshift.io")
    crd["status"]["conditions"][1].update(status="False", message="names conflict")
    ready.put(crd)
    assert "sriovnetworks.sriovnetwork.openshift.io: installed but not established (names conflict)" in failing(
        cluster, log)


def test_an_updating_pool_passes_when_allowed_and_a_degraded_one_never(ready, cluster, log):
    ready.put(fx.pool("worker", machine_count=3, config=fx.rendered("worker", RHCOS), updating=True,
                      updated_count=2))
    assert preflight.run(params(allow_updating="true"), cluster=cluster, log=log).ready
    assert "updating: 2 of 3 machines" in log.text and "allowed by allow-updating=true" in log.text
    ready.put(fx.pool("worker", machine_count=3, config=fx.rendered("worker", RHCOS), degraded=True))
    message = failing(cluster, log, allow_updating="true")
    assert "MachineConfigPool worker: degraded (1 of 3 machines); fix: repair the degraded machines" in message


def test_a_named_pool_selects_the_nodes_and_must_exist(ready, cluster, log):
    ready.load(fx.workers(2, prefix="cnf", role="worker-cnf", allocatable={"hugepages-2Mi": "8Gi"},
                          labels={"node-role.kubernetes.io/worker": ""}))
    ready.put(fx.pool("worker-cnf", machine_count=2, config=fx.rendered("worker-cnf", RHCOS)))
    ready.load(operators.objects(ready.objects("v1", "Node")))
    preflight.run(params(pool="worker-cnf", node_selector=""), cluster=cluster, log=log)
    assert "2 Ready node(s) match 'node-role.kubernetes.io/worker-cnf=': cnf-0, cnf-1" in log.text
    assert "MachineConfigPool worker-cnf: settled" in log.text
    assert "MachineConfigPool worker:" not in log.text
    # node-selector names the targets, and the pool must hold every one of them
    message = failing(cluster, log, pool="worker-cnf")
    assert ("MachineConfigPool worker-cnf: MachineConfigPool worker-cnf holds only some of the target nodes (worker-0, "
            "worker-1, worker-2 in pool worker)") in message
    message = failing(cluster, log, pool="nope")
    assert "1 check(s) failed" in message
    assert "target nodes: MachineConfigPool nope not found; fix: name an existing pool" in message


def test_no_target_node_fails_and_skips_what_depends_on_nodes(ready, cluster, log):
    message = failing(cluster, log, node_selector="role=nothing")
    assert "target nodes: no node matches 'role=nothing'; fix: check node-selector" in message
    assert "SKIP  hugepages hugepages-2Mi: no usable target nodes" in log.text
    assert "SKIP  MachineConfigPool: no usable target nodes" in log.text


def test_not_ready_nodes_are_not_counted(ready, cluster, log):
    for name in ("worker-0", "worker-1"):
        ready.patch_status("v1", "Node", name, {"conditions": [{"type": "Ready", "status": "False"}]})
    preflight.run(params(hugepages_method="none", replicas="4"), cluster=cluster, log=log)
    assert "PASS  target nodes: 1 of 3 usable (worker-0 is not Ready; worker-1 is not Ready)" in log.text
    assert "room for 4 pod(s) of 4Gi, need 4 (worker-2=16Gi)" in log.text
    message = failing(cluster, log, hugepages_method="none", replicas="5")
    assert "room for 4 pod(s) of 4Gi, need 5" in message


def test_missing_hugepages_are_a_note_when_the_pipeline_configures_them(ready, cluster, log):
    preflight.run(params(hugepages_size="1G", hugepages_count="16", hugepages_request="4Gi"), cluster=cluster, log=log)
    assert "PASS  hugepages hugepages-1Gi: room for 0 of 1 pod(s) now (worker-0=0, worker-1=0, worker-2=0); " \
           "apply-manifests configures them with a machineconfig" in log.text


def test_sriov_pfs_must_exist_on_every_target_node(ready, cluster, log):
    state = ready.get(SRIOV_API, "SriovNetworkNodeState", "worker-2", SRIOV_NS)
    state["status"]["interfaces"] = state["status"]["interfaces"][:1]
    ready.put(state)
    ready.delete(SRIOV_API, "SriovNetworkNodeState", "worker-1", SRIOV_NS)
    message = failing(cluster, log)
    assert "SR-IOV PFs: no SriovNetworkNodeState for worker-1: the SR-IOV config daemon does not run there; fix: " \
           "label the nodes feature.node.kubernetes.io/network-sriov.capable=true" in message
    assert "SR-IOV PFs: worker-2 lacks ens6f1np1 (has ens6f0np0); fix: name PFs that exist" in message
    assert preflight.run(params(pf_names='["ens6f0np0"]', node_selector="kubernetes.io/hostname=worker-2"),
                         cluster=cluster, log=log).ready


@pytest.mark.parametrize("case", [
    ("Failed", "true", "SR-IOV config daemon: sync failed on worker-0: pf ens6f0np0 not found"),
    ("InProgress", "false", "SR-IOV config daemon: still applying a policy on worker-0"),
    ("InProgress", "true", None),
], ids=["failed", "in-progress", "in-progress-allowed"])
def test_the_sriov_config_daemon_state(ready, cluster, log, case):
    sync, allow, expected = case
    ready.patch_status(SRIOV_API, "SriovNetworkNodeState", "worker-0",
                       {"syncStatus": sync, "lastSyncError": "pf ens6f0np0 not found"}, namespace=SRIOV_NS)
    if expected:
        assert expected in failing(cluster, log, allow_updating=allow)
    else:
        preflight.run(params(allow_updating=allow), cluster=cluster, log=log)
        assert "synced on the target nodes; applying on worker-0 (allowed)" in log.text


def test_sriov_mode_counts_vfs_and_notes_missing_ones(ready, cluster, log):
    preflight.run(params(network_mode="sriov", replicas="3"), cluster=cluster, log=log)
    assert "PASS  SR-IOV resource openshift.io/ens6f0np0: 21 VF(s) allocatable, need 3" in log.text
    preflight.run(params(network_mode="sriov", resource_name="cssr_vfs"), cluster=cluster, log=log)
    assert "SR-IOV resource openshift.io/cssr_vfs: 0 of 1 VF(s) allocatable now" in log.text
    assert "the SriovNetworkNodePolicy that apply-manifests applies creates them" in log.text


def test_rbac_gaps_fail_their_check_with_the_verb_to_grant(ready, cluster, log):
    ready.fail("GET", "customresourcedefinitions", 403, times=100)
    message = failing(cluster, log)
    assert "fix: give the pipeline's ServiceAccount get on customresourcedefinitions" in message
    assert "PASS  target nodes" in log.text


# -- the registry ---------------------------------------------------------------------------------------


def test_a_registry_that_answers_is_reachable(ready, cluster, log, httpserver):
    digest = "sha256:" + "a" * 64
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/latest", method="HEAD").respond_with_data(
        "", headers={"Docker-Content-Digest": digest})
    repo = f"127.0.0.1:{httpserver.port}/cssr-deploy/cssr-init"
    preflight.run(params(image_repository=repo, tls_verify="false"), cluster=cluster, log=log)
    assert f"PASS  registry 127.0.0.1:{httpserver.port}: reachable; {repo} exists ({digest})" in log.text


@pytest.mark.parametrize("case", [
    (401, {"WWW-Authenticate": 'Basic realm="registry"'}, "reachable; it asks for a login (401)"),
    (404, {}, "reachable; {repo}:v1 is not pushed yet"),
], ids=["login-required", "not-pushed"])
def test_401_and_404_count_as_reachable(ready, cluster, log, httpserver, case):
    status, headers, expected = case
    httpserver.expect_request("/v2/ns/init/manifests/v1").respond_with_data("", status=status, headers=headers)
    repo = f"127.0.0.1:{httpserver.port}/ns/init"
    preflight.run(params(image_repository=f"{repo}:v1", tls_verify="false"), cluster=cluster, log=log)
    assert expected.format(repo=repo) in log.text


def test_a_registry_that_does_not_answer_fails(ready, cluster, log):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = failing(cluster, log, image_repository=f"127.0.0.1:{port}/ns/init", tls_verify="false")
    assert f"registry 127.0.0.1:{port}: could not look up" in message
    assert "cannot reach registry" in message


def test_tls_verification_fails_against_a_plain_http_registry(ready, cluster, log, httpserver):
    message = failing(cluster, log, image_repository=f"127.0.0.1:{httpserver.port}/ns/init", tls_verify="true")
    assert "the TLS handshake with registry" in message


# -- params and the command -------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [
    ({"PARAM_PF_NAMES": '["a","b"]'}, ("a", "b")),
    ({"PARAM_PF_NAMES": "a, b"}, ("a", "b")),
    ({}, ("ens6f0np0", "ens6f1np1")),
    ({"PARAM_PF_NAMES": ""}, ("ens6f0np0", "ens6f1np1")),
], ids=["json", "comma-list", "default", "empty-is-default"])
def test_pf_names_take_json_or_a_comma_list(env, expected):
    assert preflight.Params.from_env(env).pf_names == expected


@pytest.mark.parametrize(("env", "message"), [
    ({"PARAM_NODE_SELECTOR": "a|b"}, "param node-selector: label selector 'a|b' is not valid"),
    ({"PARAM_PF_NAMES": '["../x"]'}, "param pf-names: '../x' is not an interface name"),
    ({"PARAM_PF_NAMES": "[1]"}, "param pf-names must be a JSON array of strings"),
    ({"PARAM_RESOURCE_NAME": "a" * 64}, "param resource-name='aaaa"),
    ({"PARAM_HUGEPAGES_REQUEST": "\u0663Gi"}, "param hugepages-request='\u0663Gi' is not a Kubernetes quantity"),
    ({"PARAM_IMAGE_REPOSITORY": "$(id)"}, "param image-repository: image reference '$(id)' is not valid"),
], ids=["selector", "pf-traversal", "pf-type", "resource-name-long", "quantity-digits", "image"])
def test_each_param_is_refused_by_the_shared_rule_and_named(env, message):
    """Issue 14 point 5: preflight reads node-selector, pf-names, hugepages-request and image-repository by
    the rules render and apply-manifests use, so the same value gets the same answer in every step."""
    with pytest.raises(ConfigError) as caught:
        preflight.Params.from_env(env)
    assert message in str(caught.value)


def test_bad_params_are_reported_together():
    with pytest.raises(ConfigError) as caught:
        preflight.Params.from_env({"PARAM_HUGEPAGES_SIZE": "4K", "PARAM_HUGEPAGES_REQUEST": "lots",
                                   "PARAM_REPLICAS": "0", "PARAM_NETWORK_MODE": "bridge"})
    message = str(caught.value)
    for fragment in ("hugepages-size='4K' must be one of 2M, 1G", "hugepages-request='lots' is not a Kubernetes quantity",
                     "replicas=0 is below the minimum 1", "network-mode='bridge' must be one of macvlan, sriov"):
        assert fragment in message


def test_the_command_writes_ready_or_fails(ready, run_cli):
    done = run_cli(["preflight"], {"PARAM_IMAGE_REPOSITORY": ""}, sim=ready)
    assert done.code == 0, done.err
    assert done.results == {"ready": "true"}
    ready.delete(CRD_API, "CustomResourceDefinition", "machineconfigs.machineconfiguration.openshift.io")
    failed = run_cli(["preflight"], {"PARAM_IMAGE_REPOSITORY": ""}, sim=ready)
    assert failed.code == 1
    assert failed.results == {}
    assert "machineconfigs.machineconfiguration.openshift.io: not installed" in failed.err


# -- power over nodes, compact clusters (issues 13 and 14) -------------------------------------------------


def compact(sim) -> None:
    """A three-node cluster: each node is control plane and worker; the MCO keeps them in pool master, and
    pool worker holds none (machine-config-operator getPoolsForNode)."""
    for name in [n["metadata"]["name"] for n in sim.objects("v1", "Node")]:
        sim.delete("v1", "Node", name)
    both = {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": ""}
    sim.load(fx.workers(3, prefix="master", role="master", labels=both, allocatable={"hugepages-2Mi": "16Gi"}))
    sim.put(fx.pool("worker", machine_count=0, config=fx.rendered("worker", RHCOS)))
    sim.load(operators.objects(sim.objects("v1", "Node")))


def test_a_compact_cluster_fails_naming_the_pool_that_holds_the_nodes(ready, cluster, log):
    compact(ready)
    message = failing(cluster, log, pool="worker")
    assert ("MachineConfigPool worker: MachineConfigPool worker holds none of the target nodes (master-0, master-1, "
            "master-2 in pool master): its hugepages config and upgrades would not reach them; set pool to master "
            "(a control-plane pool: with allow-control-plane=true)") in message
    assert "node power: node-selector selects control-plane nodes (master-0, master-1, master-2)" in message
    with pytest.raises(ConfigError, match="param pool=master is a control-plane pool"):
        params(pool="master")
    # the explicit allowance, with the pool that holds the nodes
    assert preflight.run(params(pool="master", allow_control_plane="true"), cluster=cluster, log=log).ready
    assert "PASS  node power: control-plane nodes allowed by allow-control-plane=true" in log.text


def test_hugepages_beyond_a_nodes_memory_fail(ready, cluster, log):
    message = failing(cluster, log, hugepages_size="1G", hugepages_count="100")
    assert ("node power: hugepages-count=100 pages of 1G is more than 75% of the memory of worker-0 has "
            "128401960Ki") in message
    preflight.run(params(hugepages_size="1G", hugepages_count="91"), cluster=cluster, log=log)
    assert "PASS  node power: no control-plane node among the targets; the hugepages fit" in log.text


def test_an_empty_node_selector_never_selects_every_node():
    with pytest.raises(ConfigError, match="param node-selector is empty and no pool is named"):
        params(node_selector="")
