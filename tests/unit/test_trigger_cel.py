"""The EventListener's CEL interceptor, read from triggers/eventlistener.yaml and run in cel-python.

Which events it accepts and rejects (secret header, event type, pool list, malformed fields), what
its overlays add, and the PipelineRun that the binding and the template make of an accepted
event: labels with the idempotency key, every `$(tt.params.x)` resolved. Triggers' extension
functions are the test implementations in tests/eventlistener_sim.py; their semantics are tested
here too.
"""

from __future__ import annotations

import io
import re

import pytest
import yaml

from cssr_tasks import pool_events as pe
from cssr_tasks import preflight
from cssr_tasks import watch_pools as wp
from cssr_tasks.log import Log
from cssr_tasks.sim import fixtures as fx
from eventlistener_sim import TRIGGERS, CelInterceptor, Template, canonical_key, go_header

TOKEN = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
HEADER = {"X-Cssr-Trigger-Token": TOKEN}
WORKER = "rendered-worker-" + "1" * 32
WORKER_NEXT = "rendered-worker-" + "2" * 32


@pytest.fixture(scope="module")
def interceptor() -> CelInterceptor:
    return CelInterceptor.from_eventlistener(secrets={("cssr-deploy", "cssr-trigger-secret"): {"token": TOKEN}})


def event(**changes: object) -> dict[str, object]:
    body = pe.Event(pe.POOL_UPDATING, "worker", WORKER, WORKER_NEXT, "quay.io/rhcos@sha256:" + "a" * 64, "default",
                    "0123456789ab", ("5.14.0-427.40.1.el9_4.x86_64",)).body()
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_the_filter_is_read_from_the_eventlistener_yaml():
    listener = yaml.safe_load((TRIGGERS / "eventlistener.yaml").read_text())
    cel = listener["spec"]["triggers"][0]["interceptors"][0]
    assert cel["ref"] == {"name": "cel", "kind": "ClusterInterceptor"}
    text = next(p["value"] for p in cel["params"] if p["name"] == "filter")
    assert "compareSecret('token', 'cssr-trigger-secret')" in text
    assert wp.TOKEN_HEADER in text


@pytest.mark.parametrize("body", [
    event(),
    event(type=pe.KERNEL_CHANGED, currentConfig=WORKER_NEXT),
    event(kernelType="realtime"),
], ids=["pool-updating", "kernel-changed", "realtime"])
def test_accepts_the_watchers_events(interceptor, body):
    outcome = interceptor.evaluate(body, HEADER)
    assert outcome.accepted, outcome.error


@pytest.mark.parametrize("kind", [pe.POOL_UPDATING, pe.KERNEL_CHANGED])
def test_every_event_the_watcher_builds_passes(interceptor, kind):
    built = pe.Event(kind, "worker", WORKER, WORKER_NEXT, "", "", "0123456789ab", ())
    assert interceptor.evaluate(built.body(), HEADER).accepted


@pytest.mark.parametrize(("body", "headers"), [
    (event(), {}),
    (event(), {"X-Cssr-Trigger-Token": TOKEN[:-1]}),
    (event(), {"X-Cssr-Trigger-Token": TOKEN + "0"}),
    (event(), {"X-Other-Token": TOKEN}),
    (event(type="pool-deleted"), HEADER),
    (event(type=None), HEADER),
    (event(pool="master", targetConfig="rendered-master-" + "2" * 32), HEADER),
    (event(pool="worker-cnf", targetConfig="rendered-worker-cnf-" + "2" * 32), HEADER),
    (event(pool=None), HEADER),
    (event(idempotencyKey="not-hex"), HEADER),
    (event(idempotencyKey="A" * 32), HEADER),
    (event(idempotencyKey=None), HEADER),
    (event(targetConfig="rendered-master-" + "2" * 32), HEADER),
    (event(targetConfig="worker"), HEADER),
    ({}, HEADER),
], ids=["no-header", "short-token", "long-token", "other-header", "unknown-type", "no-type", "master-pool",
        "unlisted-pool", "no-pool", "malformed-key", "uppercase-key", "no-key", "other-pools-config",
        "not-a-rendered-config", "empty-body"])
def test_rejects(interceptor, body, headers):
    assert not interceptor.evaluate(body, headers).accepted


def test_header_names_match_case_insensitively(interceptor):
    assert interceptor.evaluate(event(), {"x-cssr-trigger-token": TOKEN}).accepted


def test_a_missing_secret_rejects_every_event():
    without = CelInterceptor.from_eventlistener(secrets={})
    outcome = without.evaluate(event(), HEADER)
    assert not outcome.accepted
    assert "compareSecret" in outcome.error


def test_the_secret_is_read_from_the_eventlisteners_namespace():
    elsewhere = CelInterceptor.from_eventlistener(secrets={("other", "cssr-trigger-secret"): {"token": TOKEN}})
    assert not elsewhere.evaluate(event(), HEADER).accepted


@pytest.mark.parametrize(("body", "kernel_type", "reason"), [
    (event(), "default", f"pool worker is updating from {WORKER} to {WORKER_NEXT}"),
    (event(kernelType="realtime"), "realtime", f"pool worker is updating from {WORKER} to {WORKER_NEXT}"),
    (event(kernelType=None), "default", f"pool worker is updating from {WORKER} to {WORKER_NEXT}"),
    (event(type=pe.KERNEL_CHANGED, currentConfig=WORKER_NEXT), "default",
     f"pool worker settled on {WORKER_NEXT} with kernel set 0123456789ab"),
], ids=["default", "realtime", "kernel-type-missing", "kernel-changed"])
def test_overlays(interceptor, body, kernel_type, reason):
    outcome = interceptor.evaluate(body, HEADER)
    updating = "true" if body["type"] == pe.POOL_UPDATING else "false"
    assert outcome.extensions == {"kernel_type": kernel_type, "reason": reason, "allow_updating": updating}


def test_an_accepted_event_makes_one_labelled_pipelinerun(interceptor):
    body = event(kernelType="realtime")
    outcome = interceptor.evaluate(body, HEADER)
    template = Template()
    [run] = template.render(template.params(body, outcome.extensions, HEADER))
    assert run["apiVersion"] == "tekton.dev/v1"
    assert run["kind"] == "PipelineRun"
    assert run["metadata"]["generateName"] == "cssr-deploy-"
    assert run["metadata"]["labels"][wp.KEY_LABEL] == body["idempotencyKey"]
    assert run["metadata"]["labels"]["cssr-deploy/pool"] == "worker"
    assert run["metadata"]["labels"]["cssr-deploy/event-type"] == pe.POOL_UPDATING
    assert run["metadata"]["annotations"]["cssr-deploy/kernel-type"] == "realtime"
    assert run["metadata"]["annotations"]["cssr-deploy/target-config"] == WORKER_NEXT
    assert run["spec"]["pipelineRef"] == {"name": "cssr-deploy"}
    assert run["spec"]["params"] == [{"name": "pool", "value": "worker"}, {"name": "kernel-type", "value": "realtime"},
                                     {"name": "allow-updating", "value": "true"}]
    workspaces = {w["name"]: w for w in run["spec"]["workspaces"]}
    assert workspaces["modules"]["persistentVolumeClaim"] == {"claimName": "modules"}
    assert workspaces["build-context"]["volumeClaimTemplate"]["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    assert "$(" not in str(run)
    for value in run["metadata"]["labels"].values():
        assert re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", value), value


def updating_pool() -> dict[str, object]:
    """A pool the MCO is moving to WORKER_NEXT: 0 of 2 machines there yet (sim.fixtures' pool shape)."""
    pool = fx.pool("worker", machine_count=2, config=WORKER)
    pool["spec"]["configuration"]["name"] = WORKER_NEXT
    pool["status"]["updatedMachineCount"] = 0
    for condition in pool["status"]["conditions"]:
        condition["status"] = {"Updated": "False", "Updating": "True"}.get(condition["type"], condition["status"])
    return pool


@pytest.mark.parametrize(("body", "passes"), [
    (event(), True),
    (event(type=pe.KERNEL_CHANGED, currentConfig=WORKER_NEXT), False),
], ids=["pool-updating", "kernel-changed"])
def test_only_a_pool_updating_run_lets_preflight_pass_the_updating_pool(interceptor, body, passes):
    """The run the trigger makes for pool-updating must pass preflight while the pool updates (it is
    the run that builds the target kernel's modules before the first node reboots): the template's
    params, through the Pipeline's mapping, reach preflight's allow-updating. Found by the real
    upgrade (e2e/tests/test_upgrade.py): before, every pool-updating run failed preflight."""
    outcome = interceptor.evaluate(body, HEADER)
    template = Template()
    [run] = template.render(template.params(body, outcome.extensions, HEADER))
    given = {p["name"]: p["value"] for p in run["spec"]["params"]}
    pipeline = yaml.safe_load((TRIGGERS.parent / "pipelines" / "cssr-deploy.yaml").read_text())
    defaults = {p["name"]: p.get("default", "") for p in pipeline["spec"]["params"]}
    [task] = [t for t in pipeline["spec"]["tasks"] if t["name"] == "preflight"]
    env = {f"PARAM_{p['name'].upper().replace('-', '_')}": re.sub(
        r"\$\(params\.([a-z-]+)\)", lambda m: given.get(m[1], defaults[m[1]]), str(p["value"]))
        for p in task["params"] if p["name"] in ("allow-updating", "pool")}
    checks = preflight.Checks(Log("preflight", io.StringIO()))
    preflight.check_pool(preflight.Params.from_env(env), updating_pool(), checks)
    assert (checks.passed, len(checks.failures)) == ((1, 0) if passes else (0, 1)), checks.failures


def test_every_binding_param_is_a_template_param():
    template = Template()
    declared = {p["name"] for p in template.template["spec"]["params"]}
    bound = {p["name"] for p in template.binding["spec"]["params"]}
    assert bound <= declared
    assert all(p.get("description") for p in template.template["spec"]["params"])


@pytest.mark.parametrize(("name", "canonical"), [
    ("x-cssr-trigger-token", "X-Cssr-Trigger-Token"),
    ("X-CSSR-TRIGGER-TOKEN", "X-Cssr-Trigger-Token"),
    ("content-type", "Content-Type"),
    ("x_under", "X_under"),
    ("bad header", "bad header"),
], ids=["lower", "upper", "content-type", "underscore", "invalid-kept"])
def test_canonical_header_names_follow_go(name, canonical):
    assert canonical_key(name) == canonical


def test_repeated_headers_keep_every_value_and_canonical_takes_the_first(interceptor):
    assert go_header({"x-a": ["1", "2"], "X-A": "3"}) == {"X-A": ["1", "2", "3"]}
    twice = {"X-Cssr-Trigger-Token": [TOKEN, "wrong"]}
    assert interceptor.evaluate(event(), twice).accepted
    assert not interceptor.evaluate(event(), {"X-Cssr-Trigger-Token": ["wrong", TOKEN]}).accepted
