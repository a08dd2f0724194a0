"""smoke-test against the real router API's edges and a flaky cluster (issues 13.9 and 14.2, 14.4, 14.5).

Covers: a router whose API index lacks /api/v1/version passes, its version read from
/api/v1/system or left unknown; interface health as stage_check judges it (ADMIN_DOWN skipped,
OPER_UP required only behind the pod's networks, elsewhere only OPER_DOWN fails); the running
configuration in camelCase, and a user without config-read refused with a line naming it; the
password and token never follow a redirect to another host; every wait rides out more 503s
than one call's retries absorb; a lost create answer that meets 409 adopts the pod instead of
leaking it; absurd interval values end with one line and exit 2.
"""

from __future__ import annotations

import re

import pytest
from pytest_httpserver import HTTPServer
from smoke_world import NS, run

from cssr_tasks.errors import ApiError, Conflict, Forbidden, WaitTimeout
from cssr_tasks.sim import key_of
from cssr_tasks.sim.router import TrafficController
from cssr_tasks.sim.ssr import PASSWORD
from cssr_tasks.smoke_traffic import RUN_ANNOTATION

# -- the version (13.9, first bullet) ---------------------------------------------------------


def test_a_router_without_the_version_endpoint_passes_with_the_system_version(world, cluster, log):
    world.ssr.version_endpoint = False
    result = run(world, cluster, log)
    assert result.interfaces_up == 2
    assert f"router cssr-0: SSR {world.ssr.version} at https://127.0.0.1:{world.ssr.port}" in log.text
    assert [r.split("?")[0] for r in world.ssr.requests[:3]] == ["POST /api/v1/login", "GET /api/v1/version",
                                                                 "GET /api/v1/system"]


def test_a_version_nowhere_to_be_read_is_information_only(world, cluster, log):
    world.ssr.version_endpoint = world.ssr.system_endpoint = False
    result = run(world, cluster, log)
    assert result.interfaces_up == 2
    assert "router cssr-0: SSR of unknown version (no /api/v1/version or /system)" in log.text
    assert sum(1 for r in world.ssr.requests if r.startswith("GET /api/v1/system")) == 1  # read once, not per check


# -- interface health as stage_check judges it (13.9, second bullet) ---------------------------


def test_admin_down_interfaces_are_skipped(world, cluster, log):
    world.ssr.interfaces["ge-0-9"] = "OPER_DOWN"
    world.ssr.admin["ge-0-9"] = "ADMIN_DOWN"  # a port shut on purpose
    result = run(world, cluster, log)
    assert result.interfaces_up == 2
    assert "router cssr-0: device interface ge-0-9 (node cssr-0) is ADMIN_DOWN: not checked" in log.text


def test_oper_unknown_passes_where_no_pod_network_is_behind_it(world, cluster, log):
    world.ssr.interfaces["ge-0-9"] = "OPER_UNKNOWN"  # an unused port: stage_check fails only on OPER_DOWN
    result = run(world, cluster, log)
    assert result.interfaces_up == 2
    assert "2 device interface(s) OPER_UP, 2 of them behind its networks" in log.text


def test_oper_unknown_fails_behind_a_pod_network(world, cluster, log):
    world.ssr.interfaces["ge-0-1"] = "OPER_UNKNOWN"  # carries the macvlan network (targetInterface net1)
    with pytest.raises(WaitTimeout) as e:
        run(world, cluster, log)
    assert str(e.value) == (
        "could not see router pod cssr/cssr-0 healthy within 0s: device interface ge-0-1 (node cssr-0, "
        "cssr/ens6f0np0-macvlan on net1) is OPER_UNKNOWN, admin ADMIN_UP; check the link behind each interface and "
        "`show device-interface` on the router")


def test_oper_down_fails_also_where_no_pod_network_is_behind_it(world, cluster, log):
    world.ssr.interfaces["ge-0-9"] = "OPER_DOWN"
    with pytest.raises(WaitTimeout, match=r"device interface ge-0-9 \(node cssr-0\) is OPER_DOWN, admin ADMIN_UP"):
        run(world, cluster, log)


def test_an_interface_behind_a_network_missing_from_the_state_is_waited_for(world, cluster, log):
    world.ssr.unreported.add("ge-0-2")  # configured for the pod's VF, not (yet) in the router's state
    with pytest.raises(WaitTimeout, match=r"device interface ge-0-2 \(node cssr-0\), configured for cssr/sriov-b on "
                                          r"net2, is not in the router's state"):
        run(world, cluster, log)


# -- the running configuration (13.9, third bullet) -------------------------------------------


def test_the_running_configuration_is_camel_case_and_both_spellings_pass(world, cluster, log):
    node = world.ssr.running_config()["authority"]["router"][0]["node"][0]
    assert node["deviceInterface"][1] == {"name": "ge-0-2", "type": "ethernet", "pciAddress": "0000:19:00.4"}
    assert node["deviceInterface"][0]["targetInterface"] == "net1"
    assert run(world, cluster, log).interfaces_up == 2
    world.ssr.camel_case_config = False
    assert "device-interface" in world.ssr.running_config()["authority"]["router"][0]["node"][0]
    assert run(world, cluster, log).interfaces_up == 2
    assert "router cssr-0 drives VF 0000:19:00.4 as device-interface ge-0-2" in log.text


def test_a_user_without_config_read_is_told_so(world, cluster, log):
    world.ssr.config_read = False
    with pytest.raises(Forbidden) as e:
        run(world, cluster, log)
    assert str(e.value) == ("could not read the running configuration of pod cssr/cssr-0: the router answered 403; "
                            "the SSR user of the smoke test needs a role with the config-read capability (see "
                            "docs/tasks/cssr-smoke-test.md)")


# -- credentials never follow a redirect (14.2) -----------------------------------------------


@pytest.fixture
def elsewhere():
    """Another host (127.0.0.2), which records whatever reaches it."""
    server = HTTPServer(host="127.0.0.2", port=0)
    server.expect_request("/api/v1/login").respond_with_json({"token": "stolen"})
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.mark.parametrize("step", ["login", "token"], ids=["password-in-the-login-body", "bearer-token"])
def test_credentials_never_follow_a_redirect_to_another_host(world, cluster, log, elsewhere, step):
    if step == "token":  # log in first, then every call is redirected
        world.ssr.unavailable = 0
        original = world.ssr.handle

        def redirect_after_login(request):
            if request.path != "/api/v1/login":
                world.ssr.redirect_to = f"http://127.0.0.2:{elsewhere.port}"
            return original(request)

        world.ssr.server.clear()
        world.ssr.server.expect_request(re.compile(r"/.*")).respond_with_handler(redirect_after_login)
    else:
        world.ssr.redirect_to = f"http://127.0.0.2:{elsewhere.port}"
    with pytest.raises(ApiError) as e:
        run(world, cluster, log)
    assert elsewhere.log == []  # nothing, neither the password nor the token, reached the other host
    assert "answered 307 with a redirect to http://127.0.0.2:" in str(e.value)
    assert "set api-scheme and api-port to where the SSR API answers" in str(e.value)
    assert PASSWORD not in str(e.value) + log.text


# -- waits ride out transient API errors (14.4) -----------------------------------------------


def test_the_pods_ready_wait_rides_out_six_503s(world, cluster, log):
    # cluster's policy makes 3 attempts per call: six 503s used to end the step inside the wait
    world.sim.fail("GET", f"/api/v1/namespaces/{NS}/pods", 503, times=6)
    result = run(world, cluster, log, timeout="30")
    assert result.interfaces_up == 2
    lists = [r for r in world.sim.requests if r.verb == "list" and r.resource == "pods"]
    assert len(lists) == 7  # 6 refused, 1 answered: one request per attempt
    assert log.text.count("transient API error, still waiting: could not list pods.v1 in cssr: 503") == 2


def test_the_traffic_waits_ride_out_503s(world, cluster, log):
    world.sim.emulator.controllers.append(TrafficController())
    world.sim.fail("GET", "-smoke-server-", 503, times=7)  # the server pod's GETs while waiting for it to run
    result = run(world, cluster, log, traffic="true", timeout="30")
    assert result.packet_loss == "0"
    assert world.sim.objects("v1", "Pod", NS) == [world.sim.get("v1", "Pod", "cssr-0", NS)]


def test_a_lost_create_answer_then_409_adopts_the_pod_and_cleans_it_up(world, cluster, log):
    world.sim.emulator.controllers.append(TrafficController())
    # the API server stores the server pod, then its answer is lost: the retry meets 409 AlreadyExists
    world.sim.fail("POST", f"/api/v1/namespaces/{NS}/pods", 503, times=1, after=True)
    result = run(world, cluster, log, traffic="true", timeout="30")
    assert result.packet_loss == "0"
    creates = [r for r in world.sim.requests if r.verb == "create" and r.resource == "pods"]
    assert [r.status for r in creates] == [503, 409, 201]  # server (lost), server (exists), client
    assert "exists with this run's token (the answer to its create was lost, the retry met 409): adopted" in log.text
    assert world.sim.objects("v1", "Pod", NS) == [world.sim.get("v1", "Pod", "cssr-0", NS)]  # nothing leaked


def test_a_409_on_a_pod_of_another_run_is_not_adopted_and_is_not_deleted(world, cluster, log):
    world.sim.emulator.controllers.append(TrafficController())

    def squat(emulator, record, obj):  # another run's pod takes the name between our two attempts
        if record.verb == "create" and obj and "-smoke-server-" in obj["metadata"]["name"]:
            other = {**obj, "metadata": {**obj["metadata"], "annotations": {RUN_ANNOTATION: "another-run"}}}
            emulator.store.put(key_of(other), other)

    world.sim.fail("POST", f"/api/v1/namespaces/{NS}/pods", 503, times=1, after=True)
    world.sim.emulator.controllers.append(squat)
    with pytest.raises(Conflict):
        run(world, cluster, log, traffic="true", timeout="30")
    assert "adopted" not in log.text


# -- absurd numbers (14.5) --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0", "-1", "601", "5_0", "\u0665", "0x10", ""],
                         ids=["nan", "inf", "-inf", "huge", "zero", "negative", "above-max", "underscore",
                              "arabic-digit", "hex", "empty-is-default"])
def test_absurd_intervals_end_in_one_line_exit_2(run_cli, value):
    run_ = run_cli(["smoke-test"], {"PARAM_INTERVAL": value})
    if value == "":
        assert "interval" not in run_.err  # the default applies: it fails later, for want of a cluster
        return
    assert run_.code == 2
    errors = [line for line in run_.err.splitlines() if line.strip()]
    assert len(errors) == 1, run_.err
    assert "interval" in errors[0]
    assert "Traceback" not in run_.err


@pytest.mark.parametrize(("param", "value"), [("timeout", "86401"), ("timeout", "1e9"), ("max-rtt-ms", "60001")],
                         ids=["timeout-past-a-day", "timeout-float", "rtt-past-a-minute"])
def test_absurd_bounds_end_in_one_line_exit_2(run_cli, param, value):
    run_ = run_cli(["smoke-test"], {f"PARAM_{param.upper().replace('-', '_')}": value})
    assert run_.code == 2
    assert len([line for line in run_.err.splitlines() if line.strip()]) == 1
    assert param in run_.err
