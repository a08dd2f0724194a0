"""The cluster module against the simulated API: retries, error mapping, pagination, apply,
optimistic concurrency and watches, and that no library exception leaks out of a command."""

from __future__ import annotations

import threading
import time

import pytest

from cssr_tasks import cli
from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.errors import ApiError, Conflict, CssrError, Forbidden, NotFound

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "state", "namespace": "cssr"}, "data": {"a": "1"}}


@pytest.mark.parametrize("status", [429, 500, 503], ids=["429", "500", "503"])
def test_transient_errors_are_retried_and_logged(sim, cluster, log, status):
    sim.fail("GET", "/nodes", status, times=2)
    assert len(cluster.list("v1", "nodes")) == 6
    assert log.text.count("retrying in") == 2
    assert f"attempt 1/3 to list nodes.v1 failed: could not list nodes.v1: {status}" in log.text


def test_retries_are_bounded(sim, cluster, log):
    sim.fail("GET", "/nodes", 503, times=10)
    with pytest.raises(ApiError) as e:
        cluster.list("v1", "nodes")
    assert e.value.status == 503
    assert len([r for r in sim.requests if r.resource == "nodes"]) == 3


def test_retry_after_is_honoured_within_the_cap(sim, log):
    cluster = Cluster.at(sim.url, log=log, retry=RetrySettings(attempts=2, wait_initial=0.01, wait_max=0.2))
    sim.fail("GET", "/nodes", 429, times=1, headers={"Retry-After": "5"})
    start = time.monotonic()
    cluster.list("v1", "nodes")
    assert 0.15 < time.monotonic() - start < 2
    assert "retrying in 0.2s" in log.text


@pytest.mark.parametrize(("status", "error"), [(404, NotFound), (409, Conflict), (403, Forbidden), (400, ApiError)],
                         ids=["404", "409", "403", "400"])
def test_client_errors_map_to_our_errors_without_retry(sim, cluster, status, error):
    sim.fail("GET", "/nodes/worker-0", status, times=1)
    with pytest.raises(error):
        cluster.get("v1", "nodes", "worker-0")
    assert len([r for r in sim.requests if r.name == "worker-0"]) == 1


def test_server_side_apply_creates_then_is_a_no_op(sim, cluster):
    created = cluster.apply(CM)
    again = cluster.apply(CM)
    assert created["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
    writes = sim.writes()
    assert [(w.verb, w.query["fieldManager"]) for w in writes] == [("patch", "cssr-deploy")]
    assert writes[0].content_type == "application/apply-patch+yaml"


def test_replace_with_a_stale_resource_version_conflicts(sim, cluster):
    created = cluster.create(CM)
    cluster.patch("v1", "configmaps", "state", {"data": {"a": "2"}}, namespace="cssr")
    with pytest.raises(Conflict):
        cluster.replace({**created, "data": {"a": "3"}})
    fresh = cluster.get("v1", "configmaps", "state", "cssr")
    assert cluster.replace({**fresh, "data": {"a": "3"}})["data"] == {"a": "3"}


def test_label_and_field_selectors_filter(sim, cluster):
    assert {n["metadata"]["name"] for n in cluster.list("v1", "nodes", label_selector="node-role.kubernetes.io/master")} \
        == {"master-0", "master-1", "master-2"}
    assert [n["metadata"]["name"] for n in cluster.list("v1", "nodes", field_selector="metadata.name=worker-1")] \
        == ["worker-1"]


def test_watch_resumes_from_a_resource_version_and_relists_on_410(sim, cluster):
    cluster.create(CM)
    rv = cluster.list("v1", "configmaps", namespace="cssr") and sim.store.rv

    def later():
        time.sleep(0.2)
        sim.put({**CM, "data": {"a": "2"}})

    threading.Thread(target=later).start()
    events = list(cluster.watch("v1", "configmaps", namespace="cssr", resource_version=str(rv), timeout_seconds=1))
    assert [(t, o["data"]["a"]) for t, o in events] == [("MODIFIED", "2")]
    sim.store.compact()
    with pytest.raises(ApiError) as e:
        list(cluster.watch("v1", "configmaps", resource_version=str(rv), timeout_seconds=1))
    assert e.value.status == 410


def test_unknown_kind_is_our_error():
    with pytest.raises(CssrError, match="kind Gizmo is unknown"):
        Cluster.at("http://127.0.0.1:1").apply({"apiVersion": "v1", "kind": "Gizmo", "metadata": {"name": "g"}})


def test_bad_kubeconfig_is_a_config_error_naming_it(run_cli, tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: [a, kubeconfig")
    run = run_cli(["detect-kernel", "--kubeconfig", str(bad)])
    assert run.code == 2
    assert f"could not load kubeconfig {bad}" in run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize("status", [401, 403, 500, 502], ids=["401", "403", "500", "502"])
def test_no_library_exception_leaks_out_of_a_command(sim, run_cli, status):
    sim.fail("*", "/", status, times=100)
    run = run_cli(["detect-kernel"], {"CSSR_RETRY_ATTEMPTS": "2"}, sim=sim)
    assert run.code == 1
    assert "Traceback" not in run.err and "internal error" not in run.err
    assert f"error: could not list nodes.v1: {status}" in run.err


def test_internal_errors_say_so(monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(cli, "run_task", boom)
    assert cli.main(["detect-kernel"], {}) == 70
    assert "internal error: RuntimeError: bug; please report this" in capsys.readouterr().err


def test_unknown_command_prints_usage(capsys):
    assert cli.main(["frobnicate"], {}) == 2
    assert "detect-kernel" in capsys.readouterr().err
