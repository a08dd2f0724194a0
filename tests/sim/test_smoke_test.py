"""smoke-test against the simulated OpenShift and a fake SSR API over HTTPS (self-signed certificate).

Covers: a healthy router passes and the password never reaches a log; each failure (login 401,
an interface OPER_DOWN, a process not RUNNING, a network missing from network-status, a PCI
address the router does not drive, traffic loss above the threshold, a router never healthy
before the timeout) gives its own error naming the pod and the interface; warm-up waits print
progress; the traffic test's pods are removed whatever the outcome; params, TLS and credentials.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from smoke_world import MACVLAN, NETS, NS, SRIOV, World, run

from cssr_tasks import smoke_networks, smoke_params, smoke_test, smoke_traffic
from cssr_tasks.errors import ConfigError, CssrError, Forbidden, WaitTimeout
from cssr_tasks.sim import Fault
from cssr_tasks.sim import router as simrouter
from cssr_tasks.sim.router import HEALTHY_PING, Net, TrafficController
from cssr_tasks.sim.ssr import PASSWORD, ROUTER, USERNAME, FakeSsr, server_context
from cssr_tasks.smoke_networks import NetworkMismatch
from cssr_tasks.smoke_traffic import TrafficFailed
from cssr_tasks.ssr_api import pci_addresses

LOSSY_PING = """PING 192.168.20.10 (192.168.20.10) 56(84) bytes of data.
64 bytes from 192.168.20.10: icmp_seq=1 ttl=63 time=0.052 ms

--- 192.168.20.10 ping statistics ---
20 packets transmitted, 15 received, 25% packet loss, time 3811ms
rtt min/avg/max/mdev = 0.041/0.052/0.090/0.012 ms
"""
DEAD_PING = """PING 192.168.20.10 (192.168.20.10) 56(84) bytes of data.

--- 192.168.20.10 ping statistics ---
20 packets transmitted, 0 received, 100% packet loss, time 3999ms
"""


# -- a healthy router -------------------------------------------------------------------------


def test_healthy_router_passes_and_the_password_never_reaches_the_log(world, run_cli):
    run_ = run_cli(["smoke-test", "--verbose"], world.env(), sim=world.sim)
    assert run_.code == 0, run_.err
    assert run_.results == {
        "interfaces-up": "2", "processes-running": "17", "packet-loss": "", "rtt-ms": "",
        "summary": "1 router pod(s) of cssr/cssr healthy: 2 device interface(s) OPER_UP, 17 process(es) RUNNING; "
                   "traffic test off"}
    assert world.ssr.logins == [{"username": USERNAME, "password": PASSWORD}]  # sent to the router, once
    assert PASSWORD not in run_.out + run_.err
    assert "[smoke-test] router cssr-0 drives VF 0000:19:00.4 as device-interface ge-0-2" in run_.err
    assert "pod cssr-0: network cssr/sriov-b on net2, VF 0000:19:00.4 (PCIDEVICE_OPENSHIFT_IO_ENS6F1NP1)" in run_.err


def test_healthy_router_reads_only_and_asks_the_documented_queries(world, cluster, log):
    result = run(world, cluster, log)
    assert (result.interfaces_up, result.processes_running) == (2, 17)
    assert PASSWORD not in log.text
    assert not world.sim.writes()
    reads = {(r.verb, r.resource, r.subresource) for r in world.sim.requests}
    assert reads == {("get", "statefulsets", None), ("list", "pods", None),
                     ("get", "network-attachment-definitions", None)}
    pods = next(r for r in world.sim.requests if r.resource == "pods")
    assert pods.query["labelSelector"] == "app=cssr"
    assert len(world.ssr.queries) == 2
    assert all(q.startswith('{ allRouters(name: "cssr-router") { edges { node { name nodes') for q in world.ssr.queries)
    assert "state { processes { name processName status primary leaderStatus } }" in world.ssr.queries[0]
    assert "state { operationalStatus adminStatus redundancyStatus } forwarding" in world.ssr.queries[1]


def test_networks_param_overrides_the_pods_request(world, cluster, log):
    result = run(world, cluster, log, networks='["cssr/sriov-b@net2"]')
    assert result.interfaces_up == 2
    assert "network cssr/ens6f0np0-macvlan" not in log.text


def test_every_pod_is_checked_and_a_failure_names_its_pod(world, cluster, log, certificate):
    world.sim.put({**world.sts, "spec": {**world.sts["spec"], "replicas": 2}})
    world.pod(1, pod_ip="127.0.0.2")
    second = HTTPServer(host="127.0.0.2", port=world.ssr.port, ssl_context=server_context(*certificate))
    second.start()
    try:
        ssr1 = FakeSsr(second, NETS, node="cssr-1")
        ssr1.interfaces["ge-0-1"] = "OPER_DOWN"
        with pytest.raises(WaitTimeout) as e:
            run(world, cluster, log)
    finally:
        second.clear()
        second.stop()
    assert "router pod cssr/cssr-1 healthy" in str(e.value)
    assert "device interface ge-0-1 (node cssr-1, cssr/ens6f0np0-macvlan on net1) is OPER_DOWN" in str(e.value)
    assert "router cssr-0: SSR 6.3.0-107.r1" in log.text


# -- the router's API -------------------------------------------------------------------------


def test_login_401_names_the_pod_and_user_but_not_the_password(world, run_cli):
    world.ssr.password = "something-else"
    run_ = run_cli(["smoke-test"], world.env(), sim=world.sim)
    assert run_.code == 1
    errors = [line for line in run_.err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith(f"[smoke-test] error: could not log in to the SSR API of pod cssr/cssr-0 as "
                                f"{USERNAME}: the router answered 401 (wrong username or password); check the "
                                f"username and password in the files username and password in {world.credentials}")
    assert PASSWORD not in run_.out + run_.err
    assert len(world.ssr.logins) == 1  # a refused login is final, not retried


def test_interface_oper_down_names_pod_and_interface(world, cluster, log):
    world.ssr.interfaces["ge-0-2"] = "OPER_DOWN"
    with pytest.raises(WaitTimeout) as e:
        run(world, cluster, log)
    assert str(e.value) == (
        "could not see router pod cssr/cssr-0 healthy within 0s: device interface ge-0-2 (node cssr-0, cssr/sriov-b "
        "on net2) is OPER_DOWN, admin ADMIN_UP; check the link behind each interface and `show device-interface` on the router")


def test_process_not_running_names_pod_and_process(world, cluster, log):
    world.ssr.processes["highway"] = "STOPPED"
    with pytest.raises(WaitTimeout) as e:
        run(world, cluster, log)
    assert "could not see router pod cssr/cssr-0 healthy within 0s: process highway (node cssr-0) is STOPPED" in str(
        e.value)
    assert "`oc logs -n cssr cssr-0`" in str(e.value)


def test_router_that_never_becomes_healthy_times_out_with_progress(world, cluster, log):
    world.ssr.unavailable = -1
    with pytest.raises(WaitTimeout) as e:
        run(world, cluster, log, timeout="1", interval="0.3")
    assert re.match(r"could not see router pod cssr/cssr-0 healthy within 1s: https://127\.0\.0\.1:\d+ answered 503 "
                    r"SERVICE UNAVAILABLE; check that the 128T service started \(`oc logs -n cssr cssr-0`\), or raise "
                    r"timeout$", str(e.value))
    progress = re.findall(r"router cssr-0 not healthy yet \(API answered 503 SERVICE UNAVAILABLE\); \d+s of 1s",
                          log.text)
    assert 2 <= len(progress) <= 5


def test_unreachable_api_is_one_clear_error_not_a_library_exception(world, cluster, log):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WaitTimeout, match=rf"within 0s: https://127\.0\.0\.1:{port} is not answering \(Connection "
                                          r"refused\)"):
        run(world, cluster, log, api_port=str(port))


def test_router_warming_up_is_waited_for(world, cluster, log):
    world.ssr.unavailable = 1
    world.ssr.graphql_errors = 1
    world.ssr.warmup = [{"ge-0-2": "OPER_DOWN"}, {"ge-0-2": "OPER_DOWN"}]
    result = run(world, cluster, log, timeout="30")
    assert result.interfaces_up == 2
    lines = [line for line in log.text.splitlines() if "not healthy yet" in line]
    assert [re.sub(r"; \d+s of 30s$", "", line) for line in lines] == [
        "[test] router cssr-0 not healthy yet (API answered 503 SERVICE UNAVAILABLE)",
        "[test] router cssr-0 not healthy yet (GraphQL: Timeout has occurred)",
        "[test] router cssr-0 not healthy yet (interface ge-0-2 OPER_DOWN)",
        "[test] router cssr-0 not healthy yet (interface ge-0-2 OPER_DOWN)",
    ]
    assert len(world.ssr.logins) == 1


def test_wrong_router_name_reports_nothing_and_says_so(world, cluster, log):
    with pytest.raises(WaitTimeout, match="the router other reports no processes; check router-name"):
        run(world, cluster, log, router_name="other")


@pytest.mark.parametrize("verify", ["true", "ca", "false"],
                         ids=["system-cas-refuse-self-signed", "own-ca-bundle", "verification-off"])
def test_tls_verification_is_configurable(world, cluster, log, certificate, verify):
    value = str(certificate[0]) if verify == "ca" else verify
    if verify != "true":
        run(world, cluster, log, tls_verify=value)
        assert ("certificate is not verified" in log.text) == (verify == "false")
        return
    with pytest.raises(CssrError) as e:
        run(world, cluster, log, tls_verify=value)
    assert "TLS verification of https://127.0.0.1:" in str(e.value)
    assert "(self-signed certificate); the SSR's certificate is self-signed by default: set tls-verify to false" in str(
        e.value)
    assert world.ssr.logins == []  # the password never left for an unverified peer


def test_credentials_from_the_secret_through_the_api(world, cluster, log):
    world.sim.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cssr-ssr-credentials", "namespace": NS},
                   "data": {"username": base64.b64encode(USERNAME.encode()).decode(),
                            "password": base64.b64encode(PASSWORD.encode()).decode()}})
    run(world, cluster, log, credentials_dir=str(world.credentials / "absent"))
    assert world.ssr.logins == [{"username": USERNAME, "password": PASSWORD}]
    assert "SSR API user admin, from Secret cssr/cssr-ssr-credentials" in log.text
    assert PASSWORD not in log.text


def test_missing_secret_says_how_to_create_it(world, cluster, log):
    with pytest.raises(ConfigError, match=r"Secret cssr/cssr-ssr-credentials not found; create it with `oc create "
                                          r"secret generic cssr-ssr-credentials -n cssr"):
        run(world, cluster, log, credentials_dir=str(world.credentials / "absent"))


# -- pods and networks ------------------------------------------------------------------------


def test_pod_not_ready_names_the_pod(world, cluster, log):
    world.pod(0, ready=False)
    with pytest.raises(WaitTimeout) as e:
        run(world, cluster, log)
    assert str(e.value) == ("could not see pod cssr/cssr-0 Ready within 0s: ContainersNotReady containers with "
                            "unready status: [128t]; check `oc describe pod -n cssr cssr-0` and its events")


def test_missing_statefulset_is_a_clear_error(world, cluster, log):
    with pytest.raises(CssrError, match="could not get StatefulSet cssr/nope: not found; run apply-manifests"):
        run(world, cluster, log, statefulset="nope")


def test_network_missing_from_network_status_names_pod_and_network(world, cluster, log):
    world.pod(0, nets=[MACVLAN])  # requested both, Multus attached one
    with pytest.raises(NetworkMismatch) as e:
        run(world, cluster, log)
    assert str(e.value) == (
        "could not find network cssr/sriov-b in the k8s.v1.cni.cncf.io/network-status annotation of pod "
        "cssr/cssr-0 (attached: ovn-kubernetes on eth0, cssr/ens6f0np0-macvlan on net1); check the "
        "NetworkAttachmentDefinition cssr/sriov-b and the pod's events (`oc describe pod -n cssr cssr-0`)")
    assert world.ssr.logins == []


def test_network_on_another_interface_than_requested(world, cluster, log):
    with pytest.raises(NetworkMismatch, match="could not find network cssr/sriov-b on interface net5 of pod "
                                              "cssr/cssr-0: k8s.v1.cni.cncf.io/network-status has it on net2"):
        run(world, cluster, log, networks='[{"name": "sriov-b", "interface": "net5"}]')


def test_sriov_attachment_without_pci_address(world, cluster, log):
    world.pod(0, nets=[MACVLAN, Net(SRIOV.name, "net2", resource=SRIOV.resource)])
    with pytest.raises(NetworkMismatch, match=r"PCI address of network cssr/sriov-b on net2 of pod cssr/cssr-0: it "
                                              r"is an SR-IOV attachment \(openshift.io/ens6f1np1\) but"):
        run(world, cluster, log)


def test_no_network_status_at_all(world, cluster, log):
    world.pod(0, network_status_annotation=False)
    with pytest.raises(NetworkMismatch, match="pod cssr/cssr-0: it has no k8s.v1.cni.cncf.io/network-status"):
        run(world, cluster, log)


def test_pci_address_that_disagrees_names_pod_interface_and_both_addresses(world, cluster, log):
    world.ssr.pci["ge-0-2"] = "0000:19:00.5"  # configured for another VF than the device plugin gave
    with pytest.raises(NetworkMismatch) as e:
        run(world, cluster, log)
    assert str(e.value) == (
        "could not match the PCI address of network cssr/sriov-b on net2 of pod cssr/cssr-0: the pod was given VF "
        "0000:19:00.4 (PCIDEVICE_OPENSHIFT_IO_ENS6F1NP1; device-info in k8s.v1.cni.cncf.io/network-status) but the "
        "router's device-interfaces use ge-0-2 0000:19:00.5; set pci-address 0000:19:00.4 on the router's "
        "device-interface for net2")


@pytest.mark.parametrize("camel", [False, True], ids=["data-model-names", "camel-case"])
def test_running_config_pci_addresses_in_both_spellings(world, camel):
    world.ssr.camel_case_config = camel
    assert pci_addresses(world.ssr.running_config(), ROUTER) == {"0000:19:00.4": "ge-0-2"}
    assert pci_addresses(world.ssr.running_config(), "other") == {}


def test_pcidevice_variable_names():
    assert smoke_networks.pcidevice_variable("openshift.io/ens6f0np0") == "PCIDEVICE_OPENSHIFT_IO_ENS6F0NP0"
    assert simrouter.pcidevice_env([SRIOV, Net("x", "net3", pci="0000:19:00.6", resource=SRIOV.resource)]) == {
        "PCIDEVICE_OPENSHIFT_IO_ENS6F1NP1": "0000:19:00.4,0000:19:00.6"}


@pytest.mark.parametrize(("annotation", "expected"), [
    ('[{"name": "a"}, {"name": "b", "namespace": "x", "interface": "net9"}]', [("a", "", ""), ("b", "x", "net9")]),
    ("a,x/b@net9", [("a", "", ""), ("b", "x", "net9")]),
    ("", []),
], ids=["json-list", "short-form", "none"])
def test_requested_networks_forms(annotation, expected):
    found = smoke_networks.requested_networks(annotation)
    assert [(r.name, r.namespace, r.interface) for r in found] == expected


# -- traffic ----------------------------------------------------------------------------------


def traffic(world: World, **controller: Any) -> TrafficController:
    ctl = TrafficController(**controller)
    world.sim.emulator.controllers.append(ctl)
    return ctl


def test_traffic_passes_through_the_router_and_its_pods_are_removed(world, run_cli):
    ctl = traffic(world)
    run_ = run_cli(["smoke-test"], world.env(traffic="true", timeout="5"), sim=world.sim)
    assert run_.code == 0, run_.err
    assert (run_.results["packet-loss"], run_.results["rtt-ms"]) == ("0", "0.046")
    assert run_.results["summary"].endswith("traffic 0% loss, rtt 0.046 ms over 3 packets")
    server, client = ctl.created
    assert server["metadata"]["labels"][smoke_traffic.ROLE_LABEL] == "server"
    assert json.loads(server["metadata"]["annotations"][smoke_networks.NETWORKS_ANNOTATION]) == [
        {"name": "sriov-b", "namespace": NS, "default-route": ["192.168.20.1"]}]
    assert server["spec"]["containers"][0]["resources"]["requests"]["openshift.io/ens6f1np1"] == "1"
    assert json.loads(client["metadata"]["annotations"][smoke_networks.NETWORKS_ANNOTATION]) == [
        {"name": "ens6f0np0-macvlan", "namespace": NS, "default-route": ["192.168.10.1"]}]
    assert client["spec"]["containers"][0]["command"] == ["ping", "-c", "20", "-i", "0.2", "-W", "2",
                                                          "192.168.20.10"]
    assert client["spec"]["containers"][0]["image"] == smoke_params.DEFAULT_TRAFFIC_IMAGE
    assert world.sim.objects("v1", "Pod", NS) == [world.sim.get("v1", "Pod", "cssr-0", NS)]
    logs = [r for r in world.sim.requests if r.subresource == "log"]
    assert [(r.name, r.query) for r in logs] == [(client["metadata"]["name"], {"container": "ping"})]


def test_traffic_endpoints_from_params(world, cluster, log):
    ctl = traffic(world)
    run(world, cluster, log, traffic="true", timeout="5", traffic_count="5",
        traffic_client='{"network": "sriov-b", "ip": "192.168.20.50/24", "gateway": "192.168.20.1"}',
        traffic_server='{"network": "cssr/ens6f0np0-macvlan", "ip": "192.168.10.50/24"}')
    server, client = ctl.created
    assert json.loads(server["metadata"]["annotations"][smoke_networks.NETWORKS_ANNOTATION]) == [
        {"name": "ens6f0np0-macvlan", "namespace": NS, "default-route": ["192.168.10.1"], "ips": ["192.168.10.50/24"]}]
    assert client["spec"]["containers"][0]["command"][-1] == "192.168.10.50"
    assert client["spec"]["containers"][0]["command"][2] == "5"


def test_loss_above_threshold_names_the_client_pod_and_removes_the_pods(world, cluster, log):
    ctl = traffic(world, ping_output=LOSSY_PING)
    with pytest.raises(TrafficFailed) as e:
        run(world, cluster, log, traffic="true", timeout="5")
    client = ctl.created[1]["metadata"]["name"]
    assert str(e.value) == (
        f"could not pass traffic through the router: 25% of 20 packets lost, above max-packet-loss 5%; client pod "
        f"cssr/{client} (cssr/ens6f0np0-macvlan, net1, via 192.168.10.1) -> server 192.168.20.10 (cssr/sriov-b); "
        "check the router's routes and services between the two networks and `show device-interface`")
    assert world.sim.objects("v1", "Pod", NS) == [world.sim.get("v1", "Pod", "cssr-0", NS)]
    deleted = [r.name for r in world.sim.writes() if r.verb == "delete"]
    assert sorted(deleted) == sorted(p["metadata"]["name"] for p in ctl.created)


def test_loss_within_threshold_passes(world, cluster, log):
    traffic(world, ping_output=LOSSY_PING)
    result = run(world, cluster, log, traffic="true", timeout="5", max_packet_loss="25")
    assert (result.packet_loss, result.rtt_ms) == ("25", "0.052")


def test_nothing_comes_back(world, cluster, log):
    traffic(world, ping_output=DEAD_PING, client_phase="Failed")
    with pytest.raises(TrafficFailed, match="100% of 20 packets lost"):
        run(world, cluster, log, traffic="true", timeout="5")


def test_rtt_above_threshold(world, cluster, log):
    traffic(world, ping_output=HEALTHY_PING.replace("0.035/0.046/0.061", "0.035/46.5/80.1"))
    with pytest.raises(TrafficFailed, match="average rtt 46.5 ms, above max-rtt-ms 10"):
        run(world, cluster, log, traffic="true", timeout="5", max_rtt_ms="10")


def test_server_that_never_starts_times_out_and_is_removed(world, cluster, log):
    ctl = traffic(world, start_server=False)
    with pytest.raises(WaitTimeout, match=r"traffic server pod cssr/cssr-smoke-server-\w+ running within 0s: "
                                          r"Pending: ContainerCreating"):
        run(world, cluster, log, traffic="true")
    assert len(ctl.created) == 1
    assert world.sim.objects("v1", "Pod", NS) == [world.sim.get("v1", "Pod", "cssr-0", NS)]


def test_failed_client_creation_still_removes_the_server(world, cluster, log):
    ctl = traffic(world)

    def refuse_the_next_pod(emulator, record, obj):
        if record.verb == "create" and obj and obj["metadata"]["labels"].get(smoke_traffic.ROLE_LABEL) == "server":
            emulator.faults.append(Fault("POST", "/namespaces/cssr/pods", 403, 1))

    world.sim.emulator.controllers.append(refuse_the_next_pod)
    with pytest.raises(Forbidden, match="could not create pods.v1 cssr/cssr-smoke-client-"):
        run(world, cluster, log, traffic="true", timeout="5")
    assert [p["metadata"]["labels"][smoke_traffic.ROLE_LABEL] for p in ctl.created] == ["server"]
    assert world.sim.objects("v1", "Pod", NS) == [world.sim.get("v1", "Pod", "cssr-0", NS)]


def test_finished_leftovers_of_earlier_runs_are_removed(world, cluster, log):
    labels = {smoke_traffic.MANAGED_BY: "cssr-deploy", smoke_traffic.COMPONENT: "smoke-test", smoke_traffic.INSTANCE: "cssr"}
    for name, phase in (("cssr-smoke-client-old", "Failed"), ("cssr-smoke-server-busy", "Running")):
        world.sim.put({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": NS, "labels": labels},
                       "spec": {"activeDeadlineSeconds": 3600, "containers": [{"name": "ping", "image": "x"}]},
                       "status": {"phase": phase}})
    traffic(world)
    run(world, cluster, log, traffic="true", timeout="5")
    names = [p["metadata"]["name"] for p in world.sim.objects("v1", "Pod", NS)]
    assert names == ["cssr-0", "cssr-smoke-server-busy"]  # a running one may belong to a concurrent run
    assert "deleted leftover test pod cssr-smoke-client-old" in log.text


def test_traffic_needs_a_gateway_on_dpdk_networks(world, cluster, log):
    world.pod(0, nets=[Net(MACVLAN.name, "net1"), SRIOV])
    traffic(world)
    with pytest.raises(ConfigError, match=r"router pod cssr-0 has no IP on cssr/ens6f0np0-macvlan .* set "
                                          r"\"gateway\" in traffic-client"):
        run(world, cluster, log, traffic="true", timeout="5")
    assert not world.sim.writes()


PING_OUTPUTS = {
    "iputils": (HEALTHY_PING, (3, 3, 0.0, 0.046)),
    "iputils-errors": ("20 packets transmitted, 17 received, +3 errors, 15% packet loss, time 3812ms\n"
                       "rtt min/avg/max/mdev = 0.035/0.050/0.061/0.010 ms\n", (20, 17, 15.0, 0.05)),
    "iputils-all-lost": (DEAD_PING, (20, 0, 100.0, None)),
    "busybox": ("--- 10.0.0.2 ping statistics ---\n5 packets transmitted, 5 packets received, 0% packet loss\n"
                "round-trip min/avg/max = 0.040/0.059/0.085 ms\n", (5, 5, 0.0, 0.059)),
    "odd-loss": ("7 packets transmitted, 6 received, 14.2857% packet loss, time 6008ms\n"
                 "rtt min/avg/max/mdev = 1.1/2.2/3.3/0.4 ms", (7, 6, 14.2857, 2.2)),
}


@pytest.mark.parametrize("name", list(PING_OUTPUTS))
def test_ping_summary_parsing(name):
    text, (tx, rx, loss, rtt) = PING_OUTPUTS[name]
    assert smoke_traffic.parse_ping(text) == smoke_traffic.PingStats(tx, rx, loss, rtt)


def test_output_without_summary_is_a_clear_failure(world, cluster, log):
    traffic(world, ping_output="ping: connect: Network is unreachable\n", client_phase="Failed")
    with pytest.raises(TrafficFailed, match=r"the client pod ended Failed without a ping summary \(ping: connect: "
                                            r"Network is unreachable\)"):
        run(world, cluster, log, traffic="true", timeout="5")


# -- params -----------------------------------------------------------------------------------


def test_defaults():
    params = smoke_test.Params.from_env({})
    assert (params.namespace, params.statefulset, params.api_port, params.api_scheme) == ("cssr", "cssr", 443, "https")
    assert (params.tls_verify, params.traffic, params.timeout, params.interval) == (False, False, 300, 5.0)
    assert params.networks == ()


@pytest.mark.parametrize(("env", "message"), [
    ({"PARAM_TLS_VERIFY": "/nope/ca.crt"}, "tls-verify='/nope/ca.crt' is neither true, false nor the path"),
    ({"PARAM_NETWORKS": '[{"nom": "x"}]'}, "param networks has an element that is not a network"),
    ({"PARAM_NETWORKS": "a,b"}, "param networks is not valid JSON"),
    ({"PARAM_TRAFFIC_CLIENT": '{"net": "a"}'}, "param traffic-client has unknown keys net"),
    ({"PARAM_TRAFFIC_SERVER": '{"ip": "300.1.1.1/24"}'}, "param traffic-server: '300.1.1.1/24' does not appear"),
    ({"PARAM_INTERVAL": "-1"}, "param interval=-1 is below the minimum 0.1"),
    ({"PARAM_MAX_PACKET_LOSS": "101"}, "max-packet-loss=101 is above the maximum 100"),
    ({"PARAM_TRAFFIC_IMAGE": "busybox:latest"}, "traffic-image must be pinned"),
    ({"PARAM_API_SCHEME": "ftp"}, "api-scheme='ftp' must be one of https, http"),
], ids=["tls-path", "network-element", "network-json", "endpoint-key", "endpoint-ip", "interval", "loss", "latest",
        "scheme"])
def test_invalid_params_fail_before_any_request(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        smoke_test.Params.from_env(env)


def test_cli_invalid_params_exit_2_with_every_problem(run_cli):
    run_ = run_cli(["smoke-test"], {"PARAM_TIMEOUT": "soon", "PARAM_TRAFFIC": "maybe"})
    assert run_.code == 2
    assert "param timeout='soon' is not a whole number" in run_.err
    assert "param traffic='maybe' is not a boolean" in run_.err
