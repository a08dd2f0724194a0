"""Stage D: the suite's upgrade trigger on the real Tekton Triggers (harness/triggers.py): the
EventListener's sink runs as a pod on the real node, an event POSTed from a pod in the namespace
by the sink's DNS name makes exactly one labelled PipelineRun of cssr-deploy, and rejected events
make none. The fast tier's cel-python interceptor (tests/eventlistener_sim.py) and the real CEL
interceptor, compareSecret included, give the same verdict on the same events.

The suite is installed as users install it (`kubectl apply -k` through an overlay), the Secret is
made by README.md's command. Each PipelineRun an event makes is cancelled once checked.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import triggers_world as tw
from e2e.harness import registry, tekton, triggers
from e2e.harness.image_build import split
from e2e.harness.layout import NODE_NAME, Layout

from cssr_tasks import pool_events as pe
from cssr_tasks import watch_pools as wp

from conftest import ROOT, wait_for

sys.path.append(str(ROOT / "tests"))  # the fast tier's simulator, imported as its own tests do
from eventlistener_sim import CelInterceptor

NAMESPACE = f"cssr-trig-{int(time.time())}"
KEEP = bool(os.environ.get("E2E_KEEP"))
POOL = "worker"  # the pool triggers/eventlistener.yaml lists
CURRENT = f"rendered-{POOL}-" + "1" * 32
TARGET = f"rendered-{POOL}-" + "2" * 32
RUN_TIMEOUT = 60.0


@dataclass
class Listener:
    namespace: str
    token: str
    ready_seconds: float
    numbers: dict[str, Any] = field(default_factory=dict)


def event(salt: str, **changes: Any) -> dict[str, Any]:
    """A pool-updating event as the watcher builds it (a fresh target config per salt, hence a fresh
    idempotency key), with `changes` applied; a None value drops the field."""
    target = f"rendered-{POOL}-" + salt.encode().hex().ljust(32, "0")[:32]
    body = pe.Event(pe.POOL_UPDATING, POOL, CURRENT, target, "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:"
                    + "a" * 64, "default", "0123456789ab", ("5.14.0-427.40.1.el9_4.x86_64",)).body()
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture(scope="module")
def listener(layout: Layout, kubectl: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    tw.install_suite(kubectl, NAMESPACE, tmp_path_factory.mktemp("overlay-triggers"))
    token = tw.make_secret(layout, NAMESPACE)
    ready = tw.wait_eventlistener(kubectl, NAMESPACE)
    tw.start_poster(layout, kubectl, NAMESPACE)
    found = Listener(NAMESPACE, token, round(ready, 1))
    try:
        yield found
    finally:
        found.numbers["eventlistener_ready_seconds"] = found.ready_seconds
        (layout.out / "triggers.json").write_text(json.dumps(found.numbers, indent=2) + "\n")
        if not KEEP:
            kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def headers(token: str) -> dict[str, str]:
    return {wp.TOKEN_HEADER: token}


def runs_of(kubectl: Any, namespace: str, event_id: str, timeout: float = RUN_TIMEOUT) -> list[dict[str, Any]]:
    """The PipelineRuns of an accepted event, once there is one; each cancelled."""
    runs: list[dict[str, Any]] = wait_for(f"a PipelineRun labelled {tw.EVENT_ID_LABEL}={event_id}",
                                          lambda: tw.pipelineruns_by_eventid(kubectl, namespace, event_id),
                                          timeout=timeout, interval=0.2)
    for run in runs:
        tw.cancel(kubectl, namespace, run["metadata"]["name"])
    return runs


def release_refs() -> dict[str, str]:
    """The pushed images by digest, as harness/triggers.py names them in the Deployments."""
    refs = {}
    for name in triggers.COMMANDS:
        repository, tag = split(triggers.image_ref(name))
        found = registry.manifest(repository, tag)
        assert found, f"the registry has no {repository}:{tag}; run `python -m e2e.harness up`"
        refs[name] = f"{triggers.image_ref(name)}@{found[0]}"
    return refs


@pytest.mark.parametrize("deployment", triggers.DEPLOYMENTS)
def test_triggers_runs_as_pods_of_the_images_built_here(kubectl: Any, deployment: str) -> None:
    found = json.loads(kubectl("get", "deployment", deployment, "-n", triggers.NAMESPACE, "-o", "json").stdout)
    selector = ",".join(f"{k}={v}" for k, v in found["spec"]["selector"]["matchLabels"].items())
    [pod] = [p for p in json.loads(kubectl("get", "pods", "-n", triggers.NAMESPACE, "-l", selector, "-o",
                                           "json").stdout)["items"] if not p["metadata"].get("deletionTimestamp")]
    assert pod["spec"]["nodeName"] == NODE_NAME and pod["status"]["phase"] == "Running"
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] and status["containerID"].startswith("containerd://")
    assert pod["spec"]["containers"][0]["image"] in release_refs().values()
    assert found["metadata"]["labels"]["app.kubernetes.io/version"] == triggers.version()


def test_the_cluster_holds_triggers_release_as_the_harness_renders_it(layout: Layout, kubectl: Any) -> None:
    docs = triggers.objects(tekton.config_dir(layout, triggers.MODULE, triggers.WRAPPER), release_refs())
    assert not triggers.differs(layout, docs), "kubectl diff finds Triggers' objects changed since `up`"
    version = kubectl("get", "configmap", "triggers-info", "-n", triggers.NAMESPACE, "-o",
                      "jsonpath={.data.version}").stdout
    assert version == triggers.version()
    controller = json.loads(kubectl("get", "deployment", "tekton-triggers-controller", "-n", triggers.NAMESPACE,
                                    "-o", "json").stdout)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert controller[controller.index("-el-image") + 1] == release_refs()["eventlistenersink"]


def test_the_sink_runs_as_a_pod_on_the_real_node_behind_its_service(kubectl: Any, listener: Listener) -> None:
    [pod] = tw.sink_pods(kubectl, listener.namespace)
    assert pod["spec"]["nodeName"] == NODE_NAME
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] and status["containerID"].startswith("containerd://")
    # The controller's -el-image: the sink image built here, by digest.
    assert pod["spec"]["containers"][0]["image"].startswith(triggers.image_ref("eventlistenersink") + "@sha256:")
    service = json.loads(kubectl("get", "service", tw.SINK, "-n", listener.namespace, "-o", "json").stdout)
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["http-listener"] == 8080
    slices = json.loads(kubectl("get", "endpointslices", "-n", listener.namespace, "-l",
                                f"kubernetes.io/service-name={tw.SINK}", "-o", "json").stdout)["items"]
    addresses = {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
    assert addresses == {pod["status"]["podIP"]}


def test_an_accepted_event_makes_exactly_one_labelled_pipelinerun(kubectl: Any, listener: Listener) -> None:
    body = event("accepted", kernelType="realtime")
    began = time.monotonic()
    answer = tw.post_event(kubectl, listener.namespace, body, headers(listener.token))
    assert (answer["eventListener"], answer["namespace"]) == (tw.EVENTLISTENER, listener.namespace)
    runs = runs_of(kubectl, listener.namespace, answer["eventID"])
    listener.numbers["event_to_pipelinerun_seconds"] = round(time.monotonic() - began, 2)
    assert tw.verdict(kubectl, listener.namespace, answer["eventID"])[0] == "accepted"
    # The sink logs its resolved params before it creates the template's one resource: a second
    # run of this event would need a second trigger or a second POST.
    [run] = runs
    assert len(tw.pipelineruns_by_eventid(kubectl, listener.namespace, answer["eventID"])) == 1
    labels, annotations = run["metadata"]["labels"], run["metadata"]["annotations"]
    assert labels[wp.KEY_LABEL] == body["idempotencyKey"]
    assert (labels["cssr-deploy/pool"], labels["cssr-deploy/event-type"]) == (POOL, pe.POOL_UPDATING)
    assert labels["triggers.tekton.dev/eventlistener"] == tw.EVENTLISTENER
    assert labels["triggers.tekton.dev/trigger"] == "kernel-change"
    assert annotations["cssr-deploy/target-config"] == body["targetConfig"]
    assert annotations["cssr-deploy/kernel-type"] == "realtime"
    assert annotations["cssr-deploy/reason"] == f"pool {POOL} is updating from {CURRENT} to {body['targetConfig']}"
    assert run["spec"]["pipelineRef"] == {"name": "cssr-deploy"}
    # allow-updating: a pool-updating run's preflight must let the updating pool pass.
    assert run["spec"]["params"] == [{"name": "pool", "value": POOL}, {"name": "kernel-type", "value": "realtime"},
                                     {"name": "allow-updating", "value": "true"}]
    assert run["spec"]["taskRunTemplate"]["serviceAccountName"] == "cssr-deploy"


REJECTED = {
    "wrong-token": lambda token: (event("wrong-token"), {wp.TOKEN_HEADER: token[::-1]}),
    "unknown-pool": lambda token: (event("unknown-pool", pool="worker-cnf",
                                         targetConfig="rendered-worker-cnf-" + "2" * 32), headers(token)),
    "malformed-key": lambda token: (event("malformed-key", idempotencyKey="not-32-hex-digits"), headers(token)),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_a_rejected_event_makes_no_pipelinerun(kubectl: Any, listener: Listener, case: str) -> None:
    body, sent = REJECTED[case](listener.token)
    answer = tw.post_event(kubectl, listener.namespace, body, sent)
    decided, reason = tw.verdict(kubectl, listener.namespace, answer["eventID"])
    assert decided == "rejected", reason
    assert "did not return true" in reason
    # The sink decides once per event: after its refusal, nothing more is created for it.
    assert tw.pipelineruns_by_eventid(kubectl, listener.namespace, answer["eventID"]) == []
    keyed = json.loads(kubectl("get", "pipelineruns", "-n", listener.namespace, "-l",
                               f"{wp.KEY_LABEL}={body['idempotencyKey']}", "-o", "json").stdout)["items"]
    assert keyed == []


# (id, body, whose token: "right", "wrong" or None for no header): accepted and rejected kinds.
AGREEMENT = [
    ("pool-updating", event("agree-updating"), "right"),
    ("kernel-changed", event("agree-changed", type=pe.KERNEL_CHANGED, currentConfig=TARGET), "right"),
    ("realtime", event("agree-realtime", kernelType="realtime"), "right"),
    ("no-kernel-type", event("agree-no-kernel-type", kernelType=None), "right"),
    ("no-header", event("agree-no-header"), None),
    ("wrong-token", event("agree-wrong-token"), "wrong"),
    ("unknown-type", event("agree-unknown-type", type="pool-deleted"), "right"),
    ("master-pool", event("agree-master", pool="master", targetConfig="rendered-master-" + "2" * 32), "right"),
    ("no-pool", event("agree-no-pool", pool=None), "right"),
    ("uppercase-key", event("agree-uppercase", idempotencyKey="A" * 32), "right"),
    ("no-key", event("agree-no-key", idempotencyKey=None), "right"),
    ("other-pools-config", event("agree-other-config", targetConfig="rendered-master-" + "2" * 32), "right"),
    ("empty-body", {}, "right"),
]


def test_the_real_eventlistener_and_the_cel_python_interceptor_agree(kubectl: Any, listener: Listener) -> None:
    fast = CelInterceptor.from_eventlistener(namespace=listener.namespace,
                                             secrets={(listener.namespace, tw.SECRET): {"token": listener.token}})
    rows = []
    for case, body, whose in AGREEMENT:
        sent = {} if whose is None else headers(listener.token if whose == "right" else "0" * 64)
        simulated = fast.evaluate(body, sent)
        answer = tw.post_event(kubectl, listener.namespace, body, sent)
        decided, _ = tw.verdict(kubectl, listener.namespace, answer["eventID"])
        real_extensions = None
        if decided == "accepted":
            [run] = runs_of(kubectl, listener.namespace, answer["eventID"])
            notes = run["metadata"]["annotations"]
            given = {p["name"]: p["value"] for p in run["spec"]["params"]}
            real_extensions = {"kernel_type": notes["cssr-deploy/kernel-type"], "reason": notes["cssr-deploy/reason"],
                               "allow_updating": given["allow-updating"]}
        rows.append((case, "accepted" if simulated.accepted else "rejected", decided,
                     simulated.extensions if simulated.accepted else None, real_extensions))
    differing = [r for r in rows if r[1] != r[2] or r[3] != r[4]]
    table = "\n".join(f"{case:20} cel-python {sim:9} Triggers {real:9} {'' if (sim, e1) == (real, e2) else 'DIFFERS'}"
                      for case, sim, real, e1, e2 in rows)
    assert not differing, f"the fast tier and the real EventListener disagree:\n{table}\n{differing}"
    assert {r[2] for r in rows} == {"accepted", "rejected"}
