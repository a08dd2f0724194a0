"""apply-manifests against the simulated OpenShift: order, idempotence, data safety, gates, rollout, CLI.

The simulated cluster runs the controllers of sim/workloads.py (MachineConfig and SR-IOV operators,
StatefulSet controller, PVC binding) and rejects what a real API server rejects (immutable
StatefulSet and PVC fields), so the request log shows what a real cluster would see.
"""

from __future__ import annotations

import json
import re

import pytest

from cssr_tasks import apply_manifests, manifests
from cssr_tasks.errors import ApiError, ConfigError, WaitTimeout
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim import workloads as wl

FAST = {"poll-interval": "0.1", "gate-timeout": "10", "rollout-timeout": "10"}
SHORT = {"poll-interval": "0.1", "gate-timeout": "0.3", "rollout-timeout": "0.3"}
STS = ("apps/v1", "StatefulSet", "cssr", "cssr")


def env(**values: str) -> dict[str, str]:
    values = {**FAST, **values}
    return {f"PARAM_{k.upper().replace('-', '_')}": v for k, v in values.items()}


def params(**values: str) -> apply_manifests.Params:
    return apply_manifests.Params.from_env(env(**values))


def run(cluster, log, **values: str) -> apply_manifests.Result:
    return apply_manifests.run(params(**values), cluster=cluster, log=log)


@pytest.fixture
def workloads(sim):
    installed = wl.install(sim, step=0.01)
    yield installed
    assert installed.errors == []


def written(sim) -> list[tuple[str, str]]:
    return [(r.resource or "", r.name or (r.body or {}).get("metadata", {}).get("name", "")) for r in sim.writes()]


def revisions(sim) -> list[str]:
    return [r["metadata"]["name"] for r in sim.objects("apps/v1", "ControllerRevision", "cssr")]


# -- order and idempotence -------------------------------------------------------------------------------


def test_first_apply_writes_every_object_in_order(sim, cluster, log, workloads):
    result = run(cluster, log)
    assert written(sim) == [
        ("machineconfigs", "05-worker-kernelarg-hugepages"),
        ("namespaces", "cssr"),
        ("serviceaccounts", "privileged"),
        ("rolebindings", "system:openshift:scc:privileged"),
        ("sriovnetworknodepolicies", "cssr-ens6f0np0"),
        ("sriovnetworknodepolicies", "cssr-ens6f1np1"),
        ("sriovnetworks", "ens6f0np0-sriovnetwork"),
        ("sriovnetworks", "ens6f1np1-sriovnetwork"),
        ("network-attachment-definitions", "ens6f0np0-macvlan"),
        ("network-attachment-definitions", "ens6f1np1-macvlan"),
        ("persistentvolumeclaims", "modules"),
        ("statefulsets", "cssr"),
    ]
    sts = sim.get(*STS)
    assert result.statefulset_revision == sts["status"]["updateRevision"] == sts["status"]["currentRevision"]
    assert result.pods == ["cssr-0"]
    assert revisions(sim) == [result.statefulset_revision]


def test_writes_are_server_side_applies_by_cssr_deploy_except_the_claim(sim, cluster, log, workloads):
    run(cluster, log)
    for record in sim.writes():
        if record.resource == "persistentvolumeclaims":
            assert record.method == "POST"  # create-only: it can never change an existing claim
        else:
            assert record.method == "PATCH"
            assert "apply-patch" in record.content_type
            assert record.query["fieldManager"] == "cssr-deploy"


def test_gates_run_after_storage_and_before_the_workload(sim, cluster, log, workloads):
    workloads.step = 0.1  # slow enough that the gate sees the pool updating
    run(cluster, log)
    requests = sim.requests
    claim = next(i for i, r in enumerate(requests) if r.wrote and r.resource == "persistentvolumeclaims")
    workload = next(i for i, r in enumerate(requests) if r.wrote and r.resource == "statefulsets")
    gate_reads = [i for i, r in enumerate(requests) if r.resource in ("machineconfigpools", "sriovnetworknodestates")
                  and i > claim]
    assert gate_reads and all(i < workload for i in gate_reads)
    text = log.text
    assert text.index("gate pool-settled: passed") < text.index("gate sriov-synced: passed") < \
        text.index("gate node-resources: passed") < text.index("created StatefulSet cssr/cssr")
    # the new hugepages config was waited for: the pool updated its machines one by one
    assert re.search(r"MachineConfigPool worker: Updated=False, Updating=True, Degraded=False, [0-2]/3 machines "
                     r"updated", text)
    assert re.search(r"gate pool-settled took \d+\.\ds", text)


def test_every_object_is_read_before_it_is_written(sim, cluster, log, workloads):
    run(cluster, log)
    seen: set[str] = set()
    for record in sim.requests:
        if record.verb == "get":
            seen.add(record.path)
        elif record.wrote:
            path = record.path if record.name else f"{record.path}/{record.body['metadata']['name']}"
            assert path in seen, f"{record.method} {path} without a GET first"


def test_second_identical_apply_writes_nothing_and_makes_no_revision(sim, cluster, log, workloads):
    first = run(cluster, log, replicas="2")
    sim.clear_requests()
    second = run(cluster, log, replicas="2")
    assert sim.writes() == []
    assert not [r for r in sim.requests if r.is_write and r.status >= 400]
    assert second == first
    assert revisions(sim) == [first.statefulset_revision]
    assert "unchanged StatefulSet cssr/cssr" in log.text


def test_changed_template_rolls_out_exactly_one_new_revision(sim, cluster, log, workloads):
    first = run(cluster, log)
    sim.clear_requests()
    second = run(cluster, log, **{"router-image": "quay.io/juniper-128t/128t-5121:5.1.2"})
    assert written(sim) == [("statefulsets", "cssr")]
    assert second.statefulset_revision != first.statefulset_revision
    assert sorted(revisions(sim)) == sorted([first.statefulset_revision, second.statefulset_revision])
    pod = sim.get("v1", "Pod", "cssr-0", "cssr")
    assert pod["metadata"]["labels"]["controller-revision-hash"] == second.statefulset_revision
    assert pod["spec"]["containers"][0]["image"] == "quay.io/juniper-128t/128t-5121:5.1.2"


def test_scaling_up_makes_no_new_revision(sim, cluster, log, workloads):
    first = run(cluster, log)
    sim.clear_requests()
    second = run(cluster, log, replicas="3")
    assert written(sim) == [("statefulsets", "cssr")]
    assert second.statefulset_revision == first.statefulset_revision
    assert second.pods == ["cssr-0", "cssr-1", "cssr-2"]
    assert revisions(sim) == [first.statefulset_revision]


# -- data safety ---------------------------------------------------------------------------------------


def test_existing_modules_claim_is_never_touched(sim, cluster, log, workloads):
    existing = sim.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": "modules", "namespace": "cssr"},
                        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
                                 "resources": {"requests": {"storage": "10Gi"}}},
                        "status": {"phase": "Bound"}})
    run(cluster, log)
    assert not [r for r in sim.requests if r.resource == "persistentvolumeclaims" and r.is_write]
    assert sim.get("v1", "PersistentVolumeClaim", "modules", "cssr") == existing
    assert "kept PersistentVolumeClaim cssr/modules (modules: 10Gi of class nfs, ReadWriteMany): a claim is never " \
           "changed once it exists" in log.text


def test_changed_storage_params_leave_the_data_claims_alone(sim, cluster, log, workloads):
    first = run(cluster, log, replicas="2")
    claims = {c["metadata"]["name"]: c for c in sim.objects("v1", "PersistentVolumeClaim", "cssr")}
    assert set(claims) == {"modules", "cssr-data-cssr-0", "cssr-data-cssr-1"}
    sts_before = sim.get(*STS)
    sim.clear_requests()

    changed = {"replicas": "2", "data-size": "1Gi", "data-storage-class": "gp3-csi", "modules-size": "20Gi",
               "modules-storage-class": ""}
    second = run(cluster, log, **changed)

    assert sim.writes() == []  # the claim templates were kept, so the StatefulSet did not change at all
    assert not [r for r in sim.requests if r.is_write and r.status >= 400]
    assert {c["metadata"]["name"]: c for c in sim.objects("v1", "PersistentVolumeClaim", "cssr")} == claims
    assert sim.get(*STS)["spec"] == sts_before["spec"]
    assert second.statefulset_revision == first.statefulset_revision
    assert "StatefulSet cssr/cssr keeps its claim templates (cssr-data: 512Mi of class ocs-storagecluster-cephfs, " \
           "ReadWriteOnce); the params ask for cssr-data: 1Gi of class gp3-csi, ReadWriteOnce" in log.text
    # what a naive apply of the new templates gets from the API server
    naive = manifests.render(params(**changed))[-1].obj
    with pytest.raises(ApiError) as e:
        cluster.apply(naive)
    assert e.value.status == 422
    assert "Forbidden: updates to statefulset spec" in str(e.value)


def test_a_template_change_with_new_storage_params_still_keeps_the_claims(sim, cluster, log, workloads):
    run(cluster, log)
    claim = sim.get("v1", "PersistentVolumeClaim", "cssr-data-cssr-0", "cssr")
    sim.clear_requests()
    result = run(cluster, log, **{"data-size": "2Gi", "cpu": "4"})
    assert written(sim) == [("statefulsets", "cssr")]
    sts = sim.get(*STS)
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "512Mi"
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "4"
    assert sim.get("v1", "PersistentVolumeClaim", "cssr-data-cssr-0", "cssr") == claim
    assert result.pods == ["cssr-0"]


def test_no_run_ever_deletes_or_replaces_anything(sim, cluster, log, workloads):
    run(cluster, log, replicas="3")
    run(cluster, log, replicas="1", **{"data-size": "1Gi"})
    run(cluster, log, replicas="1", **{"router-image": "quay.io/juniper-128t/128t-5121:5.2.0"})
    assert not [r for r in sim.requests if r.method in ("DELETE", "PUT")]
    # scaled down: the claims of cssr-1 and cssr-2 stay (retention policy Retain)
    names = {c["metadata"]["name"] for c in sim.objects("v1", "PersistentVolumeClaim", "cssr")}
    assert {"cssr-data-cssr-1", "cssr-data-cssr-2"} <= names


# -- gates ---------------------------------------------------------------------------------------------


def _no_workload_written(sim) -> None:
    assert not [r for r in sim.writes() if r.resource == "statefulsets"]


def test_pool_gate_waits_for_the_new_config_to_be_rendered(sim, cluster, log, workloads):
    workloads.pools_render = False
    with pytest.raises(WaitTimeout) as e:
        run(cluster, log, **SHORT)
    message = str(e.value)
    assert message.startswith("could not pass gate pool-settled within 0.3s: MachineConfigPool worker has not "
                              "rendered the new hugepages config yet (target still rendered-worker-")
    assert "oc get mcp worker" in message
    _no_workload_written(sim)


def test_pool_gate_names_the_pool_state_and_counts(sim, cluster, log, workloads):
    workloads.pools_update = False
    with pytest.raises(WaitTimeout) as e:
        run(cluster, log, **SHORT)
    assert "gate pool-settled" in str(e.value)
    assert "MachineConfigPool worker: Updated=False, Updating=True, Degraded=False, 0/3 machines updated" \
        in str(e.value)
    _no_workload_written(sim)


def test_pool_gate_refuses_a_degraded_pool(sim, cluster, log, workloads):
    sim.put(fx.pool("worker", machine_count=3, config=fx.rendered("worker", "x"), degraded=True, updated_count=2))
    with pytest.raises(WaitTimeout, match=r"gate pool-settled within 0.3s: MachineConfigPool worker: "
                                          r"Updated=False, Updating=False, Degraded=True, 2/3 machines updated"):
        run(cluster, log, **SHORT, **{"hugepages-method": "none"})
    _no_workload_written(sim)


def _state(sim, node: str) -> dict:
    return sim.get(wl.SRIOV_API, "SriovNetworkNodeState", node, wl.SRIOV_NAMESPACE)


def _failed_sync(sim) -> None:
    sim.patch_status(wl.SRIOV_API, "SriovNetworkNodeState", "worker-1",
                     {"syncStatus": "Failed", "lastSyncError": "failed to set numVfs on ens6f0np0"},
                     wl.SRIOV_NAMESPACE)


def _fewer_vfs(sim) -> None:
    state = _state(sim, "worker-1")
    state["status"]["interfaces"][0]["numVfs"] = 4
    sim.put(state)


def _no_state(sim) -> None:
    sim.delete(wl.SRIOV_API, "SriovNetworkNodeState", "worker-2", wl.SRIOV_NAMESPACE)


def _no_hugepages(sim) -> None:
    node = sim.get("v1", "Node", "worker-1")
    node["status"]["allocatable"]["hugepages-2Mi"] = "0"
    sim.put(node)


def _one_vf(sim) -> None:
    node = sim.get("v1", "Node", "worker-0")
    node["status"]["allocatable"]["openshift.io/cssr_vfs"] = "1"
    sim.put(node)


def _no_vfs(sim) -> None:
    node = sim.get("v1", "Node", "worker-2")
    del node["status"]["allocatable"]["openshift.io/ens6f1np1"]
    sim.put(node)


SHARED_SRIOV = {"network-mode": "sriov", "resource-name": "cssr_vfs"}


@pytest.mark.parametrize("case", [
    ({}, _failed_sync, ["gate sriov-synced", "node worker-1: syncStatus Failed (failed to set numVfs on ens6f0np0)"]),
    ({}, _fewer_vfs, ["gate sriov-synced", "node worker-1: PF ens6f0np0 has 4 VFs, want 8"]),
    ({}, _no_state, ["gate sriov-synced", "node worker-2: no SriovNetworkNodeState"]),
    ({}, _no_hugepages, ["gate node-resources", "node worker-1: allocatable hugepages-2Mi is 0, the pod requests 4Gi"]),
    ({}, _no_vfs, ["gate node-resources", "node worker-2: allocatable openshift.io/ens6f1np1 is 0, the pod needs 1"]),
    (SHARED_SRIOV, _one_vf, ["gate node-resources",
                             "node worker-0: allocatable openshift.io/cssr_vfs is 1, the pod needs 2"]),
], ids=["sync-failed", "fewer-vfs", "no-node-state", "no-hugepages", "no-vfs", "too-few-vfs"])
def test_gate_failure_names_the_gate_the_node_and_the_numbers(sim, cluster, log, workloads, case):
    values, breaks, fragments = case
    run(cluster, log, **values)  # a good deployment; then the cluster changes under it
    breaks(sim)
    sim.clear_requests()
    with pytest.raises(WaitTimeout) as e:
        run(cluster, log, **values, **SHORT)
    message = str(e.value)
    assert message.startswith(f"could not pass {fragments[0]} within 0.3s: ")
    for fragment in fragments[1:]:
        assert fragment in message
    assert sim.writes() == []
    assert re.search(rf"{fragments[0]} took \d+\.\ds", log.text)


def test_sriov_gate_waits_while_the_policies_sync(sim, cluster, log, workloads):
    workloads.sriov_syncs = False
    with pytest.raises(WaitTimeout) as e:
        run(cluster, log, **SHORT, **{"hugepages-method": "none"})
    for node in ("worker-0", "worker-1", "worker-2"):
        assert f"node {node}: syncStatus InProgress" in str(e.value)
    _no_workload_written(sim)


def test_sriov_gate_names_a_missing_pf(sim, cluster, log):
    workloads = wl.install(sim, step=0.01, nics={"ens6f0np0": "0000:3b:00.0"})
    with pytest.raises(WaitTimeout) as e:
        run(cluster, log, **SHORT)
    assert "node worker-0: PF ens6f1np1 not found (SR-IOV PFs there: ens6f0np0)" in str(e.value)
    assert workloads.errors == []


# -- rollout -------------------------------------------------------------------------------------------


def test_rollout_wait_follows_the_controllers_progress(sim, cluster, log):
    workloads = wl.install(sim, step=0.3)
    result = run(cluster, log, replicas="3")
    progress = re.findall(r"rollout: waiting: (\d)/3 pods updated, (\d)/3 ready", log.text)
    seen = [int(ready) for _, ready in progress]
    assert seen == sorted(seen)
    assert {1, 2} <= set(seen)
    assert "rollout: passed" in log.text
    assert re.search(r"rollout took \d+\.\ds", log.text)
    assert result.pods == ["cssr-0", "cssr-1", "cssr-2"]
    status = sim.get(*STS)["status"]
    assert (status["readyReplicas"], status["updatedReplicas"]) == (3, 3)
    assert workloads.errors == []


def test_rollout_times_out_clearly(sim, cluster, log, workloads):
    workloads.pods_become_ready = False
    with pytest.raises(WaitTimeout) as e:
        run(cluster, log, **{**SHORT, "gate-timeout": "10"})
    assert str(e.value) == (
        "could not pass rollout within 0.3s: 1/1 pods updated, 0/1 ready; pod cssr-0 Pending (128t: "
        "ContainerCreating); see `oc describe pod -n cssr -l app=cssr` and the init containers' logs")


# -- end to end, other modes ---------------------------------------------------------------------------


def test_sriov_mode_gives_the_pod_vfs_and_waits_for_the_operators_networks(sim, cluster, log, workloads):
    result = run(cluster, log, **{"network-mode": "sriov"})
    pod = sim.get("v1", "Pod", result.pods[0], "cssr")
    assert json.loads(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]) == [
        {"name": "ens6f0np0-sriovnetwork"}, {"name": "ens6f1np1-sriovnetwork"}]
    assert pod["spec"]["containers"][0]["resources"]["requests"]["openshift.io/ens6f0np0"] == "1"
    nad = sim.get(wl.NAD_API, "NetworkAttachmentDefinition", "ens6f0np0-sriovnetwork", "cssr")
    assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] == "openshift.io/ens6f0np0"
    assert not [w for w in written(sim) if w[0] == "network-attachment-definitions"]  # the operator made them


def test_performance_profile_renders_into_the_pool(sim, cluster, log, workloads):
    run(cluster, log, **{"hugepages-method": "performanceprofile", "hugepages-size": "1G", "hugepages-count": "16",
                         "cpu-reserved": "0-1", "cpu-isolated": "2-31"})
    pool = sim.get(wl.MCO_API, "MachineConfigPool", "worker")
    assert {"apiVersion": wl.MCO_API, "kind": "MachineConfig", "name": "50-performance-cssr-worker"} in \
        pool["status"]["configuration"]["source"]
    assert sim.get("v1", "Node", "worker-0")["status"]["allocatable"]["hugepages-1Gi"] == "16Gi"
    assert written(sim)[0] == ("performanceprofiles", "cssr-worker")


# -- before any write ----------------------------------------------------------------------------------


def test_unknown_network_is_refused_before_any_write(sim, cluster, log, workloads):
    with pytest.raises(ConfigError) as e:
        run(cluster, log, networks='[{"name": "ens6f0np0-macvlan"}, {"name": "mgmt", "namespace": "infra"}]')
    assert "networks names infra/mgmt, which is neither rendered here (ens6f0np0-macvlan, ens6f0np0-sriovnetwork, " \
           "ens6f1np1-macvlan, ens6f1np1-sriovnetwork) nor an existing NetworkAttachmentDefinition" in str(e.value)
    assert str(e.value).endswith("nothing was written")
    assert sim.writes() == []


def test_existing_foreign_network_is_accepted(sim, cluster, log, workloads):
    sim.put({"apiVersion": wl.NAD_API, "kind": "NetworkAttachmentDefinition",
             "metadata": {"name": "mgmt", "namespace": "infra"}, "spec": {"config": "{}"}})
    result = run(cluster, log, networks='[{"name": "ens6f0np0-macvlan"}, {"name": "mgmt", "namespace": "infra"}]')
    assert result.pods == ["cssr-0"]
    assert "network infra/mgmt exists" in log.text


def test_missing_cluster_prerequisites_are_all_named_before_any_write(empty_sim, log):
    from cssr_tasks.cluster import Cluster, RetrySettings

    cluster = Cluster.at(empty_sim.url, log=log, retry=RetrySettings(attempts=1, wait_initial=0))
    with pytest.raises(ConfigError) as e:
        apply_manifests.run(params(), cluster=cluster, log=log)
    message = str(e.value)
    for fragment in ("no node matches node-selector 'node-role.kubernetes.io/worker='",
                     "MachineConfigPool worker not found",
                     "namespace openshift-sriov-network-operator not found: is the SR-IOV Network Operator installed?"):
        assert fragment in message
    assert empty_sim.writes() == []


# -- power over nodes, and a flaky API inside the waits (issue 14) ----------------------------------------


def compact_cluster(sim) -> None:
    """Three nodes that are control plane and workers at once: the MCO keeps them in pool master, and pool
    worker is empty (machine-config-operator getPoolsForNode)."""
    both = {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": ""}
    sim.load(fx.workers(3, prefix="master", role="master", labels=both))
    rhcos = fx.RELEASES["4.16"][0]
    sim.put(fx.pool("master", machine_count=3, config=fx.rendered("master", rhcos)))
    sim.put(fx.pool("worker", machine_count=0, config=fx.rendered("worker", rhcos)))
    sim.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": manifests.SRIOV_NAMESPACE}})


def test_a_compact_cluster_is_refused_naming_the_pool_that_holds_the_nodes(empty_sim, log):
    from cssr_tasks.cluster import Cluster, RetrySettings

    compact_cluster(empty_sim)
    cluster = Cluster.at(empty_sim.url, log=log, retry=RetrySettings(attempts=1, wait_initial=0))
    with pytest.raises(ConfigError) as e:
        apply_manifests.run(params(), cluster=cluster, log=log)
    message = str(e.value)
    assert "node-selector selects control-plane nodes (master-0, master-1, master-2)" in message
    assert ("MachineConfigPool worker holds none of the target nodes (master-0, master-1, master-2 in pool master): "
            "its hugepages config and upgrades would not reach them; set pool to master (a control-plane pool: "
            "with allow-control-plane=true)") in message
    assert empty_sim.writes() == []
    # the explicit allowance, with the pool that holds the nodes, passes the checks
    allowed = params(**{"pool": "master", "allow-control-plane": "true"})
    assert apply_manifests.check_cluster(allowed, cluster, log)[0] == ["master-0", "master-1", "master-2"]


def test_hugepages_beyond_the_nodes_memory_are_refused_before_any_write(sim, cluster, log, workloads):
    with pytest.raises(ConfigError) as e:
        run(cluster, log, **{"hugepages-size": "1G", "hugepages-count": "100", "hugepages-request": "8Gi"})
    assert ("hugepages-count=100 pages of 1G is more than 75% of the memory of worker-0 has 128401960Ki; "
            "worker-1 has 128401960Ki; worker-2 has 128401960Ki") in str(e.value)
    assert sim.writes() == []


def test_six_503s_on_the_pool_inside_the_gate_do_not_end_the_step(sim, cluster, log, workloads):
    """Issue 14: the gate retried only "not ready yet"; six 503s on the pool GET (two polls' worth of the
    retry policy here) ended the step after its writes."""
    sim.fail("GET", "/machineconfigpools/worker", 503, times=6)
    result = run(cluster, log)
    assert result.pods == ["cssr-0"]
    assert "transient API error, still waiting" in log.text
    assert "gate pool-settled: passed" in log.text


def test_an_api_that_stays_down_ends_the_gate_at_its_deadline_with_the_api_error(sim, cluster, log, workloads):
    sim.fail("GET", "/machineconfigpools/worker", 503, times=10_000)
    with pytest.raises(WaitTimeout) as e:
        run(cluster, log, **SHORT)
    assert "503" in str(e.value) and "the API kept failing until the 0.3s wait ran out" in str(e.value)
    _no_workload_written(sim)


# -- the command ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["apply-manifests", "apply"], ids=["task-name", "alias"])
def test_cli_writes_every_result(sim, workloads, run_cli, command):
    run = run_cli([command], env(replicas="2"), sim=sim)
    assert run.code == 0, run.err
    assert set(run.results) == {"statefulset-revision", "pods"}
    assert run.results["statefulset-revision"] == sim.get(*STS)["status"]["updateRevision"]
    assert json.loads(run.results["pods"]) == ["cssr-0", "cssr-1"]
    assert f"[{command}] gate pool-settled: passed" in run.err


@pytest.mark.parametrize(("values", "message"), [
    ({"namespace": "Not_A_Label"}, "param namespace='Not_A_Label' is not valid"),
    ({"replicas": "0"}, "param replicas=0 is below the minimum 1"),
    ({"hugepages-size": "4M"}, "param hugepages-size='4M' must be one of 2M, 1G"),
    ({"hugepages-count": "0"}, "param hugepages-count=0 is below the minimum 1"),
    ({"resource-name": "my-vfs"}, "param resource-name='my-vfs' is not valid"),
    ({"networks": "ens6f0np0-macvlan"}, "param networks is not valid JSON"),
    ({"node-selector": "a notin (b)"}, "cannot be part of a pod nodeSelector"),
    ({"device-type": "uio"}, "param device-type='uio' must be one of netdevice, vfio-pci"),
    ({"gate-timeout": "soon"}, "param gate-timeout='soon' is not a number of seconds"),
    ({"poll-interval": "-1"}, "param poll-interval=-1 is below the minimum 0.1"),
    ({"poll-interval": "0"}, "param poll-interval=0 is below the minimum 0.1"),
    ({"rollout-timeout": "1e20"}, "param rollout-timeout=1e20 is above the maximum 604800"),
], ids=["namespace", "replicas", "hugepages-size", "hugepages-count", "resource-name", "networks", "selector",
        "device-type", "gate-timeout", "poll-interval", "poll-interval-zero", "rollout-timeout-huge"])
def test_cli_invalid_param_gives_its_error_and_makes_no_request(sim, workloads, run_cli, values, message):
    run = run_cli(["apply-manifests"], env(**values), sim=sim)
    assert run.code == 2
    assert message in run.err
    assert run.results == {}
    assert sim.requests == []


def test_cli_api_failure_is_one_clear_line(sim, workloads, run_cli):
    sim.fail("PATCH", "/statefulsets/cssr", 503, times=5)
    run = run_cli(["apply-manifests"], {**env(), "CSSR_RETRY_ATTEMPTS": "2"}, sim=sim)
    assert run.code == 1
    assert "[apply-manifests] error: could not apply statefulsets.apps/v1 cssr/cssr: 503" in run.err
    assert "attempt 1/2 to apply statefulsets.apps/v1 cssr/cssr failed" in run.err
    assert "Traceback" not in run.err


# -- no image registry (DESIGN.md decision 7) ------------------------------------------------------------


def test_a_rerun_asks_no_registry_and_names_no_kernel_set_image(sim, workloads, run_cli, httpserver):
    """The pods run router-image only: apply-manifests reads no digest, so an unreachable registry cannot stop it,
    and the params the Task dropped (init-image, init-image-digest, docker-config, tls-verify) change nothing."""
    dropped = {"init-image": f"localhost:{httpserver.port}/cssr/cssr-init:abcdef012345", "init-image-digest": "",
               "tls-verify": "false", "docker-config": "/nowhere", "images-namespace": "missing"}
    first = run_cli(["apply-manifests"], env(**dropped), sim=sim)
    assert first.code == 0, first.err
    assert set(first.results) == {"statefulset-revision", "pods"}
    pod = sim.get(*STS)["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {apply_manifests.Params().router_image}
    assert [b["metadata"]["name"] for b in sim.objects("rbac.authorization.k8s.io/v1", "RoleBinding", "missing")] == []

    sim.clear_requests()
    again = run_cli(["apply-manifests"], env(**dropped), sim=sim)
    assert again.code == 0, again.err
    assert sim.writes() == []
    assert again.results == first.results
    assert httpserver.log == []
    # a no-change run: 5 LISTs, 15 GETs and 11 server-side applies that change nothing
    assert len(sim.requests) == 31, [(r.verb, r.resource, r.name) for r in sim.requests]

