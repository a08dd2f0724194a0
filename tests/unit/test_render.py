"""Rendering the deployment, offline: params, schemas, PoC fidelity field by field, and `cssr-tasks render`.

Every object of several param sets validates against the Kubernetes schemas and the CRDs in
.cache/crds (pinned in crds/go.mod, fetched by `make crds`; or $CSSR_CRD_DIR); the default StatefulSet keeps every field of the PoC's that has a
purpose and drops the ones the API server rejects or sets itself; each invalid param gives its own
error; the render command writes the same objects to files or stdout without any cluster.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from cssr_tasks import cli, manifests, node_power, render
from cssr_tasks.errors import ConfigError
from cssr_tasks.manifests import Params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lint"))
from schemas import validate_object  # the lint gate's validator, shared

DIGEST = "sha256:" + "ab" * 32
PARAM_SETS = {
    "default": {},
    "sriov-shared-1G-profile": {
        "network-mode": "sriov", "resource-name": "cssr_vfs", "pf-names": '["ens1f0", "ens1f1"]',
        "device-type": "vfio-pci", "hugepages-size": "1G", "hugepages-count": "16", "hugepages-request": "8Gi",
        "hugepages-method": "performanceprofile", "cpu-reserved": "0-1", "cpu-isolated": "2-31",
        "node-selector": "node-role.kubernetes.io/worker-cnf=", "pool": "worker-cnf", "memory": "8Gi",
        "kernel-args": "intel_iommu=on iommu=pt"},
    "sriov-per-pf-networks": {
        "network-mode": "sriov", "namespace": "cssr-lab", "replicas": "3",
        "networks": '[{"name": "ens6f0np0-sriovnetwork", "interface": "net1"}, '
                    '{"name": "ens6f1np1-sriovnetwork", "interface": "net2"}, {"name": "mgmt", "namespace": "infra"}]'},
    "no-hugepages-default-storage": {
        "hugepages-method": "none", "modules-storage-class": "", "data-storage-class": "", "node-selector": "cssr=router",
        "kernel-args": ""},
}


def params(**env: str) -> Params:
    return Params.from_env({f"PARAM_{k.upper().replace('-', '_')}": v for k, v in env.items()})


def by_kind(rendered: list[manifests.Manifest], kind: str) -> list[dict]:
    return [m.obj for m in rendered if m.kind == kind]


def one(rendered: list[manifests.Manifest], kind: str) -> dict:
    [obj] = by_kind(rendered, kind)
    return obj


@pytest.fixture
def default() -> list[manifests.Manifest]:
    return manifests.render(params())


# -- schemas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", PARAM_SETS.values(), ids=PARAM_SETS.keys())
def test_every_rendered_object_validates(env):
    rendered = manifests.render(params(**env))
    assert rendered
    problems = [p for m in rendered for p in validate_object(m.obj)]
    assert problems == []


@pytest.mark.parametrize("env", PARAM_SETS.values(), ids=PARAM_SETS.keys())
def test_yaml_output_reads_back_as_the_same_objects(env):
    for manifest in manifests.render(params(**env)):
        assert yaml.safe_load(manifests.to_yaml(manifest.obj)) == manifest.obj


def test_values_cannot_inject_yaml():
    # accepted values that are YAML syntax stay plain strings: the templates are filled as data
    rendered = manifests.render(params(**{"kernel-args": '["isolcpus=#x", "nohz_full=*alias", "rcu_nocbs={d}", '
                                                         '"irqaffinity=&f", "tsc=\'h\'"]'}))
    mc = one(rendered, "MachineConfig")
    assert mc["spec"]["kernelArguments"][3:] == ["isolcpus=#x", "nohz_full=*alias", "rcu_nocbs={d}", "irqaffinity=&f",
                                                 "tsc='h'"]
    assert yaml.safe_load(manifests.to_yaml(mc)) == mc


def test_the_validator_catches_what_it_should():
    sts = one(manifests.render(params()), "StatefulSet")
    sts["spec"]["strategy"] = {}  # the PoC's mistake
    assert any("strategy" in p for p in validate_object(sts))
    policy = one(manifests.render(params(**{"pf-names": "ens1f0"})), "SriovNetworkNodePolicy")
    policy["spec"]["deviceType"] = "igb_uio"
    assert any("deviceType" in p for p in validate_object(policy))
    nad = one(manifests.render(params(**{"pf-names": "ens1f0"})), "NetworkAttachmentDefinition")
    nad["spec"]["confg"] = nad["spec"].pop("config")
    assert any("confg" in p for p in validate_object(nad))


# -- the PoC, field by field --------------------------------------------------------------------------


def test_statefulset_keeps_the_pocs_shape(default):
    sts = one(default, "StatefulSet")
    assert sts["apiVersion"] == "apps/v1"
    assert sts["metadata"]["name"] == "cssr"
    assert sts["metadata"]["namespace"] == "cssr"
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["selector"] == {"matchLabels": {"app": "cssr"}}
    template = sts["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "cssr"}
    # the README's "pay attention to" annotation: the PoC's two macvlan networks
    assert json.loads(template["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]) == [
        {"name": "ens6f0np0-macvlan"}, {"name": "ens6f1np1-macvlan"}]
    pod = template["spec"]
    assert pod["serviceAccountName"] == "privileged"
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/worker": ""}
    # the PoC's init-modules and cssr-kmod-builder moved to the pipeline: wait-modules only waits for their work
    assert [c["name"] for c in pod["initContainers"]] == ["wait-modules", "cssr-init-data"]
    assert [c["name"] for c in pod["containers"]] == ["128t"]


def test_wait_modules_waits_on_the_volume_with_the_router_image_and_the_module_list(default):
    init = one(default, "StatefulSet")["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == "quay.io/juniper-128t/128t-5121:5.1.2-1"  # the router's: no kernel-set image
    assert init["command"] == ["/bin/sh", "-c"]
    assert {e["name"]: e["value"] for e in init["env"]} == {"CSSR_MODULES": "igb_uio,rte_kni",
                                                            "CSSR_WAIT_SECONDS": "1800"}
    assert init["volumeMounts"] == [{"mountPath": "/mnt/modules-volume", "name": "modules", "readOnly": True}]
    assert "securityContext" not in init  # it only reads files
    script = init["args"][0]
    assert "volume=/mnt/modules-volume" in script
    assert "$$" not in script  # Kubernetes would make it `$`
    assert "dpdk_build" not in script and "make" not in script  # it never builds


def test_the_module_list_reaches_the_pods():
    """One param names the modules (they follow the router release): build-kmods builds them, the pods wait for them."""
    sts = one(manifests.render(params(modules="igb_uio")), "StatefulSet")
    init = sts["spec"]["template"]["spec"]["initContainers"][0]
    assert {e["name"]: e["value"] for e in init["env"]}["CSSR_MODULES"] == "igb_uio"


def test_the_pods_run_the_router_image_only():
    """DESIGN.md decision 7: nothing of the kernel set (no cssr-init image, no kmod-builder) is in the pod template,
    so a pool-updating run makes no new StatefulSet revision, and the pods pull nothing from the internal registry."""
    rendered = manifests.render(params(**{"router-image": f"quay.io/juniper-128t/128t-5121@{DIGEST}"}))
    pod = one(rendered, "StatefulSet")["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {f"quay.io/juniper-128t/128t-5121@{DIGEST}"}
    text = manifests.to_yaml(pod)
    assert "cssr-init:" not in text and "kmod-builder" not in text and "image-registry" not in text


def test_init_data_copies_only_what_is_missing(default):
    init = one(default, "StatefulSet")["spec"]["template"]["spec"]["initContainers"][1]
    assert init["image"] == "quay.io/juniper-128t/128t-5121:5.1.2-1"
    assert init["imagePullPolicy"] == "IfNotPresent"
    assert init["securityContext"] == {"privileged": True}
    assert init["command"] == ["/bin/bash"]
    assert init["args"] == ["-c", "set -x && "
                            "if [ ! -d /mnt/var-128technology ]; then cp -RPfp /var/128technology "
                            "/mnt/var-128technology; fi && "
                            "if [ ! -d /mnt/etc-128t-monitoring ]; then cp -RPfp /etc/128t-monitoring "
                            "/mnt/etc-128t-monitoring; fi"]
    assert init["volumeMounts"] == [{"mountPath": "/mnt", "name": "cssr-data"}]


def test_router_container_keeps_resources_mounts_and_prestop(default):
    router = one(default, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert router["image"] == "quay.io/juniper-128t/128t-5121:5.1.2-1"
    assert router["imagePullPolicy"] == "IfNotPresent"
    assert router["securityContext"] == {"privileged": True}
    assert router["resources"] == {"requests": {"cpu": "2", "hugepages-2Mi": "4Gi"},
                                   "limits": {"cpu": "2", "hugepages-2Mi": "4Gi"}}
    assert router["volumeMounts"] == [
        {"mountPath": "/usr/lib/modules", "name": "modules", "subPath": "modules"},
        {"mountPath": "/dev", "name": "dev"},
        {"mountPath": "/hugepages", "name": "hugepage"},
        {"mountPath": "/var/128technology", "name": "cssr-data", "subPath": "var-128technology"},
        {"mountPath": "/etc/128t-monitoring", "name": "cssr-data", "subPath": "etc-128t-monitoring"}]
    assert router["lifecycle"] == {"preStop": {"exec": {"command": ["sh", "-c", "service 128T stop"]}}}


def test_pod_volumes_tolerations_and_data_claims(default):
    sts = one(default, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "modules", "persistentVolumeClaim": {"claimName": "modules"}},
        {"name": "dev", "hostPath": {"path": "/dev", "type": "Directory"}},
        {"name": "hugepage", "emptyDir": {"medium": "HugePages"}}]
    assert pod["tolerations"] == [
        {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
        {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists",
         "tolerationSeconds": 300},
        {"effect": "NoSchedule", "key": "node.kubernetes.io/memory-pressure", "operator": "Exists"}]
    assert sts["spec"]["volumeClaimTemplates"] == [{"metadata": {"name": "cssr-data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "ocs-storagecluster-cephfs",
        "resources": {"requests": {"storage": "512Mi"}}}}]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_statefulset_drops_what_the_api_server_rejects_or_sets(default):
    sts = one(default, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert "strategy" not in sts["spec"]
    assert "status" not in sts
    assert "creationTimestamp" not in sts["metadata"]
    assert "creationTimestamp" not in sts["spec"]["template"]["metadata"]
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert "openshift.io/scc" not in annotations
    assert annotations["openshift.io/required-scc"] == "privileged"
    for dropped in ("preemptionPolicy", "securityContext", "serviceAccount"):
        assert dropped not in pod
    assert "modules-node" not in [v["name"] for v in pod["volumes"]]


def test_modules_claim_is_the_pocs(default):
    claim = one(default, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "modules"
    assert claim["metadata"]["labels"]["app"] == "cssr"
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}},
                             "storageClassName": "ocs-storagecluster-cephfs", "volumeMode": "Filesystem"}


def test_rbac_is_what_oc_adm_policy_creates(default):
    """PoC step 3; no step 4 (system:image-puller on an images namespace): the pods pull no internal-registry image."""
    account = one(default, "ServiceAccount")
    assert account["metadata"] == {"name": "privileged", "namespace": "cssr", "labels": manifests.LABELS}
    [scc] = by_kind(default, "RoleBinding")
    assert scc["metadata"]["name"] == "system:openshift:scc:privileged"
    assert scc["metadata"]["namespace"] == "cssr"
    assert scc["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": "system:openshift:scc:privileged"}
    assert scc["subjects"] == [{"kind": "ServiceAccount", "name": "privileged", "namespace": "cssr"}]


def test_namespace_allows_privileged_pods(default):
    labels = one(default, "Namespace")["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("pod-security")} == {
        "pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/audit": "privileged",
        "pod-security.kubernetes.io/warn": "privileged"}


def test_sriov_objects_are_the_pocs_with_the_namespace_fixed(default):
    policies = by_kind(default, "SriovNetworkNodePolicy")
    assert [p["spec"]["resourceName"] for p in policies] == ["ens6f0np0", "ens6f1np1"]
    assert policies[0]["metadata"]["namespace"] == "openshift-sriov-network-operator"
    assert policies[0]["spec"] == {
        "nodeSelector": {"node-role.kubernetes.io/worker": ""}, "resourceName": "ens6f0np0", "needVhostNet": False,
        "isRdma": False, "numVfs": 8, "deviceType": "netdevice", "nicSelector": {"pfNames": ["ens6f0np0#1-7"]}}
    networks = by_kind(default, "SriovNetwork")
    assert [n["metadata"]["name"] for n in networks] == ["ens6f0np0-sriovnetwork", "ens6f1np1-sriovnetwork"]
    assert networks[1]["spec"] == {"resourceName": "ens6f1np1", "networkNamespace": "cssr", "spoofChk": "off",
                                   "trust": "on", "capabilities": '{"mac": true, "ips": true}'}


def test_macvlan_networks_sit_on_vf0(default):
    nads = by_kind(default, "NetworkAttachmentDefinition")
    assert [n["metadata"]["name"] for n in nads] == ["ens6f0np0-macvlan", "ens6f1np1-macvlan"]
    assert nads[0]["metadata"]["namespace"] == "cssr"
    assert set(nads[0]) == {"apiVersion", "kind", "metadata", "spec"}  # the template's cni section is gone
    assert json.loads(nads[1]["spec"]["config"]) == {
        "cniVersion": "0.3.1", "name": "ens6f1np1-macvlan", "type": "macvlan", "master": "ens6f1v0",
        "mode": "bridge", "promiscMode": "true"}


def test_hugepages_machineconfig_is_the_pocs_for_the_pool(default):
    mc = one(default, "MachineConfig")
    assert mc["metadata"]["name"] == "05-worker-kernelarg-hugepages"
    assert mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"] == "worker"
    assert mc["spec"] == {"config": {"ignition": {"version": "3.2.0"}}, "kernelArguments": [
        "default_hugepagesz=2M", "hugepagesz=2M", "hugepages=8192", "intel_iommu=on"]}


def test_apply_order_is_cluster_namespace_rbac_networks_storage_workload(default):
    assert [m.stage for m in default] == sorted((m.stage for m in default), key=manifests.STAGES.index)
    assert [str(m) for m in default] == [
        "MachineConfig 05-worker-kernelarg-hugepages", "Namespace cssr", "ServiceAccount cssr/privileged",
        "RoleBinding cssr/system:openshift:scc:privileged",
        "SriovNetworkNodePolicy openshift-sriov-network-operator/cssr-ens6f0np0",
        "SriovNetworkNodePolicy openshift-sriov-network-operator/cssr-ens6f1np1",
        "SriovNetwork openshift-sriov-network-operator/ens6f0np0-sriovnetwork",
        "SriovNetwork openshift-sriov-network-operator/ens6f1np1-sriovnetwork",
        "NetworkAttachmentDefinition cssr/ens6f0np0-macvlan", "NetworkAttachmentDefinition cssr/ens6f1np1-macvlan",
        "PersistentVolumeClaim cssr/modules", "StatefulSet cssr/cssr"]


# -- param sets ---------------------------------------------------------------------------------------


def test_sriov_mode_requests_one_vf_per_attachment():
    rendered = manifests.render(params(**PARAM_SETS["sriov-per-pf-networks"]))
    assert not by_kind(rendered, "NetworkAttachmentDefinition")  # the operator makes them from SriovNetworks
    policies = by_kind(rendered, "SriovNetworkNodePolicy")
    assert [p["spec"]["nicSelector"]["pfNames"] for p in policies] == [["ens6f0np0"], ["ens6f1np1"]]
    sts = one(rendered, "StatefulSet")
    router = sts["spec"]["template"]["spec"]["containers"][0]
    assert router["resources"]["limits"] == {"cpu": "2", "hugepages-2Mi": "4Gi", "openshift.io/ens6f0np0": "1",
                                             "openshift.io/ens6f1np1": "1"}
    assert json.loads(sts["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])[2] == {
        "name": "mgmt", "namespace": "infra"}
    assert sts["spec"]["template"]["spec"]["initContainers"][0]["image"] == router["image"]  # not the kernel set's
    assert sts["spec"]["replicas"] == 3
    assert [(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(rendered, "RoleBinding")] == [
        ("cssr-lab", "system:openshift:scc:privileged")]


def test_shared_resource_and_performance_profile():
    p = params(**PARAM_SETS["sriov-shared-1G-profile"])
    rendered = manifests.render(p)
    [policy] = by_kind(rendered, "SriovNetworkNodePolicy")
    assert policy["metadata"]["name"] == "cssr-cssr-vfs"
    assert policy["spec"]["nicSelector"]["pfNames"] == ["ens1f0", "ens1f1"]
    assert policy["spec"]["deviceType"] == "vfio-pci"
    assert policy["spec"]["nodeSelector"] == {"node-role.kubernetes.io/worker-cnf": ""}
    profile = one(rendered, "PerformanceProfile")
    assert profile["spec"]["hugepages"] == {"defaultHugepagesSize": "1G", "pages": [{"size": "1G", "count": 16}]}
    assert profile["spec"]["cpu"] == {"reserved": "0-1", "isolated": "2-31"}
    assert profile["spec"]["additionalKernelArgs"] == ["intel_iommu=on", "iommu=pt"]
    assert profile["spec"]["machineConfigPoolSelector"] == {
        "pools.operator.machineconfiguration.openshift.io/worker-cnf": ""}
    assert not by_kind(rendered, "MachineConfig")
    router = one(rendered, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    # two attachments of the one shared network: two VFs of the one resource, Guaranteed QoS with memory
    assert router["resources"]["requests"] == {"cpu": "2", "memory": "8Gi", "hugepages-1Gi": "8Gi",
                                               "openshift.io/cssr_vfs": "2"}


def test_no_hugepages_config_and_default_storage_classes():
    rendered = manifests.render(params(**PARAM_SETS["no-hugepages-default-storage"]))
    assert not by_kind(rendered, "MachineConfig") and not by_kind(rendered, "PerformanceProfile")
    assert "storageClassName" not in one(rendered, "PersistentVolumeClaim")["spec"]
    sts = one(rendered, "StatefulSet")
    assert "storageClassName" not in sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert sts["spec"]["template"]["spec"]["nodeSelector"] == {"cssr": "router"}


def test_warnings_name_a_moving_router_image():
    [warning] = params(**{"router-image": "quay.io/juniper-128t/128t-5121:latest"}).warnings()
    assert "router-image" in warning and "latest" in warning
    assert params(**{"router-image": "quay.io/juniper-128t/128t-5121:5.1.2"}).warnings() == []


def test_task_defaults_are_the_params_defaults():
    task = yaml.safe_load((Path(__file__).resolve().parents[2] / "tasks/cssr-apply-manifests.yaml").read_text())
    from cssr_tasks import apply_manifests

    env = {f"PARAM_{p['name'].upper().replace('-', '_')}": p["default"] for p in task["spec"]["params"]}
    assert apply_manifests.Params.from_env(env) == apply_manifests.Params()


# -- invalid params -----------------------------------------------------------------------------------


INVALID = [
    ({"namespace": "Cssr_Test"}, "param namespace='Cssr_Test' is not valid: a DNS-1123 label"),
    ({"namespace": "x" * 64}, "param namespace='xxxx"),
    ({"namespace": "openshift-cssr"}, "param namespace='openshift-cssr' is reserved"),
    ({"replicas": "0"}, "param replicas=0 is below the minimum 1"),
    ({"replicas": "two"}, "param replicas='two' is not a whole number"),
    ({"node-selector": "tier in (a,b)"}, "param node-selector: term 'tier in (a,b)' cannot be part of a pod "
                                         "nodeSelector"),
    ({"node-selector": "a b c"}, "param node-selector: label selector 'a b c' is not valid"),
    ({"router-image": "ubi8"}, "param router-image='ubi8' is not valid; a fully qualified image reference"),
    ({"network-mode": "ipvlan"}, "param network-mode='ipvlan' must be one of macvlan, sriov"),
    ({"networks": "[{name: x}]"}, "param networks is not valid JSON"),
    ({"networks": '{"name": "x"}'}, "param networks must be a JSON list, got dict"),
    ({"networks": '["ens6f0np0-macvlan"]'}, "param networks[0] must be an object with a \"name\""),
    ({"networks": '[{"name": "Bad_Name"}]'}, "param networks[0].name='Bad_Name' is not a NetworkAttachment"),
    ({"networks": '[{"name": "x", "namespace": 7}]'}, "param networks[0].namespace=7 is not a namespace name"),
    ({"pf-names": "[]"}, "param pf-names holds no PF"),
    ({"pf-names": " , "}, "param pf-names holds no PF"),
    ({"pf-names": "ens6f0np0#1-7"}, "param pf-names: 'ens6f0np0#1-7' is not an interface name"),
    ({"pf-names": "eno1,eno1"}, "param pf-names lists a PF twice"),
    ({"pf-names": "en-o1"}, "param pf-names: 'en-o1' cannot name its SR-IOV resource"),
    ({"pf-names": '["ens1", 2]'}, "param pf-names must be a JSON array of strings"),
    ({"num-vfs": "0"}, "param num-vfs=0 is below the minimum 1"),
    ({"num-vfs": "1"}, "param num-vfs=1 leaves no VF for the policy"),
    ({"resource-name": "cssr-vfs"}, "param resource-name='cssr-vfs' is not valid; letters, digits and '_' only"),
    ({"device-type": "igb_uio"}, "param device-type='igb_uio' must be one of netdevice, vfio-pci"),
    ({"hugepages-size": "2Mi"}, "param hugepages-size='2Mi' must be one of 2M, 1G"),
    ({"hugepages-count": "0"}, "param hugepages-count=0 is below the minimum 1"),
    ({"hugepages-count": "-5"}, "param hugepages-count=-5 is below the minimum 1"),
    ({"hugepages-request": "lots"}, "param hugepages-request='lots' is not a Kubernetes quantity"),
    ({"hugepages-size": "1G", "hugepages-request": "1500Mi"}, "param hugepages-request=1500Mi must be a positive "
                                                               "multiple of the 1G page size (hugepages-1Gi)"),
    ({"hugepages-count": "100"}, "param hugepages-request=4Gi is more than a node's 100 pages of 2M"),
    ({"hugepages-method": "tuned"}, "param hugepages-method='tuned' must be one of machineconfig"),
    ({"hugepages-method": "performanceprofile"}, "param cpu-reserved is required with hugepages-method="
                                                 "performanceprofile"),
    ({"cpu-isolated": "2-x"}, "param cpu-isolated='2-x' is not valid; a cpuset"),
    ({"kernel-args": "hugepages=4"}, "param kernel-args: 'hugepages=4' is set from hugepages-size"),
    ({"cpu": "two"}, "param cpu='two' is not a Kubernetes quantity"),
    ({"memory": "0"}, "param memory='0' must be more than zero"),
    ({"modules-storage-class": "Fast SSD"}, "param modules-storage-class='Fast SSD' is not valid"),
    ({"data-size": "big"}, "param data-size='big' is not a Kubernetes quantity"),
    ({"pool": "Worker CNF"}, "param pool='Worker CNF' is not valid"),
    ({"replicas": "1e20"}, "param replicas='1e20' is not a whole number"),
    ({"replicas": "100000000000000000000"}, "param replicas=100000000000000000000 is above the maximum 100"),
    ({"num-vfs": "100000"}, "param num-vfs=100000 is above the maximum 256"),
    ({"node-selector": ""}, "param node-selector is empty, which selects every node (the control plane included)"),
    ({"node-selector": " "}, "param node-selector is empty"),
    ({"pool": "master"}, "param pool=master is a control-plane pool"),
    ({"pool": "arbiter"}, "param pool=arbiter is a control-plane pool"),
    ({"node-selector": "node-role.kubernetes.io/control-plane="}, "param node-selector selects control-plane nodes "
                                                                  "(node-role.kubernetes.io/control-plane)"),
    ({"kernel-args": "intel_iommu=on init=/bin/sh selinux=0"}, "param kernel-args: init=/bin/sh, selinux=0 not in "
                                                               "the allowlist"),
    ({"hugepages-count": "10000000"}, "param hugepages-count=10000000 pages of 2M is more memory than any node has; "
                                      "use at most 8388608"),
    ({"allow-kernel-args": "mitigations=off"}, "param allow-kernel-args: 'mitigations=off' is not a kernel argument "
                                               "name"),
    ({"allow-control-plane": "maybe"}, "param allow-control-plane='maybe' is not a boolean"),
    # issue 14 point 5: one rule per kind of value, each error naming its param
    ({"allow-kernel-args": "-1"}, "param allow-kernel-args: '-1' is not a kernel argument name"),
    ({"allow-kernel-args": "a" * 300}, "is not a kernel argument name"),
    ({"cpu-reserved": "\u0663"}, "param cpu-reserved='\u0663' is not valid; a cpuset"),
    ({"router-image": "quay.io/" + "a" * 300 + ":1"}, "param router-image: image reference 'quay.io/aaa"),
    ({"router-image": "quay.io/o/i:1 x"}, "param router-image: image reference 'quay.io/o/i:1 x' is not valid"),
    ({"modules-storage-class": "a..b"}, "param modules-storage-class='a..b' is not valid: a DNS-1123 subdomain"),
    ({"resource-name": "a" * 64}, "param resource-name='aaaa"),
    ({"pf-names": "a" * 300}, "param pf-names: 'aaaa"),
    ({"node-selector": "a; touch /tmp/x"}, "param node-selector: label selector 'a; touch /tmp/x' is not valid"),
    ({"node-selector": "a" * 64 + "=b"}, "param node-selector: label selector"),
]


@pytest.mark.parametrize(("env", "message"), INVALID, ids=[
    "namespace-case", "namespace-long", "namespace-reserved", "replicas-zero", "replicas-word", "selector-set",
    "selector-syntax", "image-unqualified", "network-mode",
    "networks-json", "networks-dict", "networks-string", "networks-name", "networks-namespace", "pf-empty",
    "pf-blank",
    "pf-range", "pf-twice", "pf-resource", "pf-json", "vfs-zero", "vfs-macvlan", "resource-name", "device-type",
    "hugepages-size", "hugepages-count-zero", "hugepages-count-negative", "hugepages-request-word",
    "hugepages-request-multiple", "hugepages-request-too-big", "hugepages-method", "profile-needs-cpus",
    "cpuset", "kernel-args-hugepages", "cpu", "memory-zero", "storage-class", "data-size", "pool",
    "replicas-float", "replicas-huge", "vfs-huge", "selector-empty", "selector-blank", "pool-master", "pool-arbiter",
    "selector-control-plane", "kernel-args-unlisted", "hugepages-count-huge", "allow-kernel-args-value",
    "allow-control-plane-word", "allow-kernel-args-dash", "allow-kernel-args-long", "cpuset-digits",
    "image-long", "image-space", "storage-class-dots", "resource-name-long", "pf-long",
    "selector-shell", "selector-key-long"])
def test_each_invalid_param_gives_its_error(env, message):
    with pytest.raises(ConfigError) as e:
        params(**env)
    assert message in str(e.value)


def test_empty_means_the_default_or_what_the_task_says_it_means():
    """An empty pf-names is the default, as for every param; the Task gives an empty kernel-args
    and storage class their own meaning (none, the cluster's default class)."""
    assert params(**{"pf-names": ""}).pf_names == Params().pf_names
    empty = params(**{"kernel-args": "", "modules-storage-class": ""})
    assert (empty.kernel_args, empty.modules_storage_class) == ((), "")


def test_the_hostile_machineconfig_of_the_hardening_issue_is_refused_as_a_whole():
    """Issue 14: `--pool master --kernel-args 'selinux=0 enforcing=0 init=/bin/sh' --hugepages-count 1e21` was
    rendered; now each of the three is named in the one error."""
    with pytest.raises(ConfigError) as e:
        params(pool="master", **{"kernel-args": "selinux=0 enforcing=0 init=/bin/sh",
                                 "hugepages-count": "999999999999999999999"})
    text = str(e.value)
    assert "param pool=master is a control-plane pool" in text
    assert "selinux=0, enforcing=0, init=/bin/sh not in the allowlist" in text
    assert "hugepages-count=999999999999999999999" in text


def test_the_control_plane_and_other_kernel_args_only_when_allowed_explicitly():
    mc = one(manifests.render(params(pool="master", **{
        "node-selector": "node-role.kubernetes.io/master=", "allow-control-plane": "true",
        "kernel-args": "intel_iommu=on iommu=pt mitigations=off", "allow-kernel-args": '["mitigations"]'})),
        "MachineConfig")
    assert mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"] == "master"
    assert mc["spec"]["kernelArguments"][-3:] == ["intel_iommu=on", "iommu=pt", "mitigations=off"]
    with pytest.raises(ConfigError, match="mitigations=off not in the allowlist"):
        params(**{"kernel-args": "mitigations=off", "allow-kernel-args": "nosmt"})


def test_every_allowlisted_kernel_arg_renders_in_a_performance_profile():
    allowed = sorted(node_power.KERNEL_ARGS - set(node_power.GENERATED_KERNEL_ARGS))
    args = [f"{name}=1" for name in allowed]
    profile = one(manifests.render(params(**{**PARAM_SETS["sriov-shared-1G-profile"], "kernel-args": json.dumps(args)})),
                  "PerformanceProfile")
    assert profile["spec"]["additionalKernelArgs"] == args


def test_every_bad_param_is_named_in_one_error():
    with pytest.raises(ConfigError) as e:
        params(namespace="BAD", replicas="0", **{"hugepages-size": "3M", "resource-name": "a-b"})
    text = str(e.value)
    assert text.startswith("invalid params: ")
    for name in ("namespace", "replicas", "hugepages-size", "resource-name"):
        assert f"param {name}=" in text


# -- cssr-tasks render ----------------------------------------------------------------------------------


def test_render_writes_one_file_per_object_in_apply_order(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["render", "--out", str(out)], {}) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "01-machineconfig-05-worker-kernelarg-hugepages.yaml"
    assert files[3] == "04-rolebinding-system-openshift-scc-privileged.yaml"
    assert files[-1] == "12-statefulset-cssr.yaml"
    written = [yaml.safe_load((out / name).read_text()) for name in files]
    assert written == [m.obj for m in manifests.render(params())]
    assert "[render] wrote 12 manifests to" in capsys.readouterr().err


def test_render_replaces_its_own_files_and_keeps_others(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["render", "--out", str(out), "--hugepages-method", "performanceprofile", "--cpu-reserved", "0",
                     "--cpu-isolated", "1-3"], {}) == 0
    (out / "99-mine.yaml").write_text("kind: Mine\n")
    (out / "01-notes.yaml").write_text("# my own notes\n")
    assert cli.main(["render", "--out", str(out)], {}) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "01-performanceprofile-cssr-worker.yaml" not in names  # stale, removed
    assert "01-machineconfig-05-worker-kernelarg-hugepages.yaml" in names
    assert {"99-mine.yaml", "01-notes.yaml"} <= set(names)


def test_render_to_stdout_is_one_yaml_stream(capsys):
    assert cli.main(["render", "--namespace", "lab"], {}) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in documents][-1] == "StatefulSet"
    assert documents == [m.obj for m in manifests.render(params(namespace="lab"))]


def test_render_params_file_sits_between_environment_and_flags(tmp_path, capsys):
    file = tmp_path / "site.yaml"
    file.write_text(yaml.safe_dump({"namespace": "from-file", "replicas": 2, "pf-names": ["ens1f0"],
                                    "networks": [{"name": "ens1f0-macvlan"}], "hugepages-count": 4096}))
    env = {"PARAM_NAMESPACE": "from-env", "PARAM_REPLICAS": "5", "PARAM_CPU": "4"}
    assert cli.main(["render", "--params-file", str(file), "--replicas", "3"], env) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    sts = documents[-1]
    assert sts["metadata"]["namespace"] == "from-file"  # the file wins over the environment
    assert sts["spec"]["replicas"] == 3  # a flag wins over the file
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "4"  # env still counts
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "NetworkAttachmentDefinition"] == [
        "ens1f0-macvlan"]


@pytest.mark.parametrize(("content", "message"), [
    ("namespace: x\nnamspace: y\n", "unknown param(s) namspace"),
    ("- a\n- b\n", "it holds a list, not a map"),
    ("a: [\n", "could not read params file"),
], ids=["typo", "not-a-map", "bad-yaml"])
def test_render_params_file_errors(tmp_path, capsys, content, message):
    file = tmp_path / "p.yaml"
    file.write_text(content)
    assert cli.main(["render", "--params-file", str(file)], {}) == 2
    assert message in capsys.readouterr().err


def test_render_invalid_param_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["render", "--out", str(out), "--replicas", "0"], {}) == 2
    assert not out.exists()
    assert "[render] error: invalid params: param replicas=0 is below the minimum 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--no-such-flag"], ["--replicas"], ["--out"]], ids=["unknown", "no-value", "out"])
def test_render_refuses_a_bad_option_in_one_line_with_exit_2(capsys, argv):
    """render parses with the suite's parser: a bad option is one line and exit 2, never argparse's
    usage text and SystemExit."""
    assert cli.main(["render", *argv], {}) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "see cssr-tasks render --help" in captured.err
    assert captured.out == ""


def test_render_takes_the_options_every_command_takes(tmp_path, capsys):
    """Offline, it ignores --kubeconfig and --simulated and writes no results; a bad param is still
    refused by name."""
    common = ["--kubeconfig", "/nonexistent", "--simulated", "--results-dir", str(tmp_path / "results"), "--verbose"]
    assert cli.main(["render", *common], {}) == 0
    assert "StatefulSet" in capsys.readouterr().out
    assert cli.main(["render", *common, "--namespace", "a" * 64], {}) == 2
    assert "param namespace=" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_render_warns_about_networks_it_cannot_check_offline(capsys):
    assert cli.main(["render", "--networks", '[{"name": "ens6f0np0-macvlan"}, {"name": "mgmt"}]'], {}) == 0
    err = capsys.readouterr().err
    assert "network cssr/mgmt is not rendered here, and offline it cannot be checked" in err
    assert "ens6f0np0-macvlan is not rendered" not in err


def test_render_needs_no_cluster(capsys):
    # a kubeconfig pointing nowhere changes nothing: render never connects
    assert cli.main(["render"], {"KUBECONFIG": "/nonexistent/kubeconfig"}) == 0
    assert "StatefulSet" in capsys.readouterr().out
    assert render.NEEDS_CLUSTER is False


@pytest.mark.parametrize("target", ["file", "inside-a-file", "unwritable"])
def test_render_out_that_cannot_hold_the_manifests_is_one_line_and_exit_2(tmp_path, capsys, target):
    """Issue 14: `render --out /etc/hostname` ended in a traceback (exit 70)."""
    file = tmp_path / "hostname"
    file.write_text("router-1\n")
    # /proc takes no new folder, not even from root: the write itself fails
    out = {"file": file, "inside-a-file": file / "out", "unwritable": Path("/proc/cssr-render/out")}[target]
    assert cli.main(["render", "--out", str(out)], {}) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "error" in line]) == 1 and "Traceback" not in err
    assert f"--out {out}" in err
    assert file.read_text() == "router-1\n"
    assert [p.name for p in tmp_path.rglob("*")] == ["hostname"]
