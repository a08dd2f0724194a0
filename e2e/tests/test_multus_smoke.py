"""Stage D, the data path: real Multus attaches macvlan networks to a router stand-in that forwards
between them, and the suite's own smoke-test Task, run as a TaskRun, sends real pings through it.

The real router StatefulSet cannot run on this node (its kernel has no module support; see Stage C:
the runs), so `cssr-router-standin`, a StatefulSet of this test's own, runs the router stand-in
image privileged: the fake SSR API as PID 1, net.ipv4.ip_forward=1 in its network namespace. Two
networks, each a veth parent of harness/multus.py with two NetworkAttachmentDefinitions of type
macvlan (bridge mode) on it: the router's, with the router's fixed address (static IPAM), and the
hosts', for smoke-test's traffic pods (host-local IPAM, with a route to the other network through
the router). The hosts need that route: smoke-test asks Multus for a `default-route` via the
router, which Multus v4.2.3 does not apply (netutils.go DeleteDefaultGW looks for a default route
with a nil Dst, which netlink v1.3 reports as 0.0.0.0/0; the pod keeps eth0's default route, and
SetDefaultGW's EEXIST is ignored; upstream PR k8snetworkplumbingwg/multus-cni#1552). The traffic
pods run the ping image of multus.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from e2e.harness import multus, registry, standins, tasks_image, world_c
from e2e.harness.image_build import split
from e2e.harness.layout import Layout
from test_pipeline_run import log_of, overlay, succeeded, taskrun_seconds

from cssr_tasks.cluster import Cluster
from cssr_tasks.sim import ssr

from conftest import NOT_SERVED, wait_for

NAMESPACE_PREFIX = "cssr-multus-"
NAMESPACE = f"{NAMESPACE_PREFIX}{int(time.time())}"
STATEFULSET = "cssr-router-standin"  # a stand-in: the real router cannot run here
ACCOUNT = "cssr-deploy"

# interface of the router -> (router's NAD, hosts' NAD, macvlan parent, subnet); the router is .2 of each.
NETWORKS = {"net1": ("cssr-e2e-net1", "cssr-e2e-hosts1", "cssr-e2e-n1a", ipaddress.ip_network("192.168.101.0/24")),
            "net2": ("cssr-e2e-net2", "cssr-e2e-hosts2", "cssr-e2e-n2a", ipaddress.ip_network("192.168.102.0/24"))}
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
FORWARDING = "/proc/sys/net/ipv4/ip_forward"
TASKRUN_TIMEOUT = 300.0


@dataclass
class DataPath:
    namespace: str
    router_image: str
    ping_image: str
    numbers: dict[str, Any] = field(default_factory=dict)


def pushed(ref: str) -> str:
    """The image by digest at the pods' registry address (the node caches tags: a rebuilt stand-in
    keeps its tag)."""
    repository, tag = split(ref)
    found = registry.manifest(repository, tag)
    assert found, f"{ref} is not in the registry; run multus.up / images.up"
    return world_c.for_pods(found[0], repository)


def router_address(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return subnet.network_address + 2


def nad(name: str, master: str, ipam: dict[str, Any]) -> dict[str, Any]:
    config = {"cniVersion": "0.4.0", "name": name, "type": "macvlan", "master": master, "mode": "bridge",
              "ipam": ipam}
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"config": json.dumps(config)}}


def nads(layout: Layout) -> list[dict[str, Any]]:
    """Per network: the router's attachment at .2, and the hosts' (.10-.250) with a route to the other
    network via the router."""
    made = []
    for router_nad, hosts_nad, master, subnet in NETWORKS.values():
        [other] = [n[3] for n in NETWORKS.values() if n[3] != subnet]
        made.append(nad(router_nad, master, {"type": "static", "addresses": [
            {"address": f"{router_address(subnet)}/{subnet.prefixlen}"}]}))
        made.append(nad(hosts_nad, master, {
            "type": "host-local", "dataDir": str(multus.ipam_dir(layout)),
            "ranges": [[{"subnet": str(subnet), "rangeStart": str(subnet.network_address + 10),
                         "rangeEnd": str(subnet.network_address + 250)}]],
            "routes": [{"dst": str(other), "gw": str(router_address(subnet))}]}))
    return made


def router_standin(image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": STATEFULSET, "cssr-e2e/stand-in": "router"}
    networks = [{"name": n[0], "interface": interface} for interface, n in NETWORKS.items()]
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": STATEFULSET, "namespace": NAMESPACE, "labels": labels,
                     "annotations": {"cssr-e2e/stand-in": "the cSSR router StatefulSet cannot run on this node"}},
        "spec": {
            "replicas": 1, "serviceName": STATEFULSET,
            "selector": {"matchLabels": {"app.kubernetes.io/name": STATEFULSET}},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "router", "image": image,
                        # privileged: /proc/sys is writable (ip_forward), as the real router pod is privileged
                        "securityContext": {"privileged": True},
                        "ports": [{"containerPort": 443, "name": "ssr-api"}],
                        "readinessProbe": {"tcpSocket": {"port": 443}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }


def clean_earlier(admin: Cluster, kubectl: Any) -> None:
    for ns in admin.list("v1", "namespaces"):
        name = ns["metadata"]["name"]
        if name.startswith(NAMESPACE_PREFIX) and name != NAMESPACE:
            kubectl("delete", "namespace", name, "--wait=false", check=False)


def router_pod(admin: Cluster) -> dict[str, Any] | None:
    pod = admin.get_or_none("v1", "pods", f"{STATEFULSET}-0", NAMESPACE)
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


@pytest.fixture(scope="module")
def data_path(layout: Layout, admin: Cluster, kubectl: Any,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataPath]:
    clean_earlier(admin, kubectl)
    world = DataPath(NAMESPACE, pushed(standins.router_ref()), pushed(multus.ping_ref()))
    kubectl("create", "namespace", NAMESPACE)
    # The suite as a user installs it (README), Tasks included, into this namespace.
    tmp = overlay(tmp_path_factory.mktemp("overlay-d"), NAMESPACE, world_c.buildah_ref())
    rendered = [d for d in yaml.safe_load_all(kubectl("kustomize", str(tmp)).stdout) if d]
    kubectl("apply", "--server-side", "--field-manager=e2e-installer", "-f", "-",
            stdin=yaml.safe_dump_all([d for d in rendered if d["kind"] not in NOT_SERVED]))
    # deploy/rbac.yaml grants the StatefulSet by its name, `cssr`: the stand-in's name is added here,
    # as README's Security section tells users of another name to do.
    read = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "smoke-test-router-standin", "namespace": NAMESPACE},
            "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": [STATEFULSET],
                       "verbs": ["get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "smoke-test-router-standin", "namespace": NAMESPACE},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "smoke-test-router-standin"},
               "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]}
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "cssr-ssr-credentials", "namespace": NAMESPACE},
              "stringData": {"username": ssr.USERNAME, "password": ssr.PASSWORD}}
    kubectl("apply", "--server-side", "--field-manager=e2e-installer", "-f", "-",
            stdin=yaml.safe_dump_all([read, binding, secret, *nads(layout)]))
    began = time.monotonic()
    admin.create(router_standin(world.router_image))
    wait_for(f"pod {STATEFULSET}-0 Ready", lambda: router_pod(admin), timeout=180, interval=0.5)
    world.numbers["router_standin_ready_seconds"] = round(time.monotonic() - began, 1)
    try:
        yield world
    finally:
        (layout.out / "multus.json").write_text(json.dumps(world.numbers, indent=2) + "\n")
        if os.environ.get("E2E_KEEP", "") in ("", "0"):
            kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def taskrun(world: DataPath) -> dict[str, Any]:
    [client, server] = [json.dumps({"network": hosts, "gateway": str(router_address(subnet))})
                        for _, hosts, _, subnet in NETWORKS.values()]
    values = {"namespace": world.namespace, "statefulset": STATEFULSET, "api-scheme": "https", "api-port": "443",
              "tls-verify": "false", "traffic": "true", "traffic-image": world.ping_image,
              "traffic-client": client, "traffic-server": server, "timeout": "120", "interval": "1",
              "tasks-image": tasks_image.tasks_ref()}
    return {"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
            "metadata": {"generateName": "smoke-test-", "namespace": world.namespace},
            "spec": {"taskRef": {"name": "cssr-smoke-test"}, "serviceAccountName": ACCOUNT,
                     "params": [{"name": k, "value": v} for k, v in values.items()], "timeout": "10m"}}


def run_to_end(admin: Cluster, world: DataPath, label: str) -> dict[str, Any]:
    began = time.monotonic()
    name = admin.create(taskrun(world))["metadata"]["name"]

    def done() -> dict[str, Any] | None:
        run = admin.get("tekton.dev/v1", "taskruns", name, world.namespace)
        conditions = (run.get("status") or {}).get("conditions") or []
        return run if conditions and conditions[0]["status"] != "Unknown" else None

    run = wait_for(f"TaskRun {name}", done, timeout=TASKRUN_TIMEOUT, interval=1)
    results = {r["name"]: r["value"] for r in run["status"].get("results") or []}
    world.numbers[label] = {"taskrun": name, "wall_seconds": round(time.monotonic() - began, 1),
                            "taskrun_seconds": taskrun_seconds(run), "status": succeeded(run),
                            "packet_loss": results.get("packet-loss"), "rtt_ms": results.get("rtt-ms")}
    return run


def statuses(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["interface"]: e for e in json.loads(pod["metadata"]["annotations"][NETWORK_STATUS])}


def test_multus_attaches_net1_and_net2_to_the_router_standin(data_path: DataPath, admin: Cluster,
                                                            layout: Layout) -> None:
    pod = admin.get("v1", "pods", f"{STATEFULSET}-0", NAMESPACE)
    found = statuses(pod)
    assert found["eth0"].get("default") is True
    for interface, (name, _, _, subnet) in NETWORKS.items():
        entry = found[interface]
        assert (entry["name"], entry["ips"]) == (f"{NAMESPACE}/{name}", [str(router_address(subnet))]), entry
    # Written by Multus itself: its client's field manager on the pod's status, owning the annotation.
    writers = [m for m in pod["metadata"]["managedFields"]
               if "f:k8s.v1.cni.cncf.io/network-status" in json.dumps(m.get("fieldsV1"))]
    assert [(m["manager"], m["operation"], m.get("subresource")) for m in writers] == [("multus", "Update", "status")]
    uid = pod["metadata"]["uid"]
    log = multus.log_path(layout).read_text(errors="replace")
    for interface, (name, *_) in NETWORKS.items():
        assert f"Add: {NAMESPACE}:{STATEFULSET}-0:{uid}:{NAMESPACE}/{name}({name}):{interface} " in log


def test_the_router_standin_forwards_and_reports_its_links_up(data_path: DataPath, kubectl: Any) -> None:
    out = kubectl("logs", "-n", NAMESPACE, f"{STATEFULSET}-0").stdout
    assert "net1 OPER_UP, net2 OPER_UP" in out, out
    assert "it forwards IPv4 between its networks (net.ipv4.ip_forward=1)" in out, out
    assert kubectl("exec", "-n", NAMESPACE, f"{STATEFULSET}-0", "--", "cat", FORWARDING).stdout.strip() == "1"


def test_smoke_test_taskrun_pings_through_the_router_without_loss(data_path: DataPath, admin: Cluster,
                                                                  kubectl: Any) -> None:
    run = run_to_end(admin, data_path, "smoke_test")
    pod = run["status"]["podName"]
    assert succeeded(run) == ("True", "Succeeded"), log_of(kubectl, NAMESPACE, pod, "step-smoke-test")
    results = {r["name"]: r["value"] for r in run["status"]["results"]}
    assert results["packet-loss"] == "0"
    assert 0 < float(results["rtt-ms"]) < 100
    assert results["interfaces-up"] == "2"
    log = log_of(kubectl, NAMESPACE, pod, "step-smoke-test")
    # Real ping output, parsed by smoke_traffic: 20 sent, 20 back, from a client on hosts1 to a server on hosts2.
    assert "traffic: 20 sent, 20 received, 0% loss" in log, log
    assert f"({NAMESPACE}/cssr-e2e-hosts1, net1, via 192.168.101.2) -> server 192.168.102." in log, log


def test_smoke_test_fails_with_its_one_line_when_the_router_stops_forwarding(
        data_path: DataPath, admin: Cluster, kubectl: Any) -> None:
    router = ["exec", "-n", NAMESPACE, f"{STATEFULSET}-0", "--", "sh", "-c"]
    kubectl(*router, f"echo 0 > {FORWARDING}")
    try:
        run = run_to_end(admin, data_path, "smoke_test_forwarding_off")
    finally:
        kubectl(*router, f"echo 1 > {FORWARDING}")
    assert succeeded(run) == ("False", "StepFailed")
    lines = log_of(kubectl, NAMESPACE, run["status"]["podName"], "step-smoke-test").splitlines()
    assert "traffic: 20 sent, 0 received, 100% loss" in "\n".join(lines)
    assert lines[-1].startswith("[smoke-test] error: could not pass traffic through the router: 100% of 20 "
                                "packets lost, above max-packet-loss 5%; "), lines[-1]
