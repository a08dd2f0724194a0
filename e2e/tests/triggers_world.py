"""The upgrade trigger on the real Tekton Triggers (Stage D), for test_triggers.py and the upgrade
test: the suite with its EventListener installed as users install it, the trigger Secret made as
README.md says, events POSTed from a pod in the namespace (the path the pool watcher takes), the
sink's verdict on each event read from its log, and the PipelineRuns an event made.

`kubectl` is conftest's fixture: kubectl(*args, check=True, stdin=None) as the cluster's admin.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from e2e.harness import node_images
from e2e.harness.layout import NODE_NAME, Layout
from test_tekton import install

from conftest import ROOT, wait_for

EVENTLISTENER = "cssr-deploy"  # triggers/eventlistener.yaml
SINK = f"el-{EVENTLISTENER}"  # the Deployment and Service Triggers makes for it
SECRET = "cssr-trigger-secret"
EVENT_ID_LABEL = "triggers.tekton.dev/triggers-eventid"
# The sink's log field of the event ID: pkg/apis/triggers' EventIDLabelKey, without the group.
EVENT_ID_FIELD = "/triggers-eventid"
# A pod that only POSTs, carrying the watcher's name label: the only pods that
# triggers/networkpolicy.yaml lets reach the sink. It stands in for the watcher; it is not it.
POSTER = "watcher-standin-poster"
POSTER_LABELS = {"app.kubernetes.io/name": "cssr-watch-pools", "cssr-e2e/stand-in": "event-poster"}
# What the sink logs per event (pkg/sink/sink.go): the resolved params of an accepted one (info),
# the interceptor's refusal (debug: Stage D sets the sinks' level, harness/triggers.py).
ACCEPTED = "ResolvedParams"
REJECTED = "interceptor stopped trigger processing"


def install_suite(kubectl: Any, namespace: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The repository's `kubectl apply -k .` through a user's overlay into `namespace` (test_tekton's)."""
    kubectl("create", "namespace", namespace)
    return install(kubectl, namespace, tmp_path)


def secret_command() -> str:
    """README.md's command that makes the trigger Secret, as written there (`oc -n cssr ...`)."""
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()
             if f"create secret generic {SECRET}" in line and line.strip().startswith("openssl")]
    assert len(lines) == 1, f"README.md should hold one command that makes {SECRET}; found {lines}"
    return lines[0]


def make_secret(layout: Layout, namespace: str) -> str:
    """Runs README.md's command with this cluster's kubectl for `oc` and `namespace` for cssr;
    returns the token it stored."""
    command = secret_command()
    kubectl = f"{layout.binary('kubectl')} --kubeconfig={layout.admin_kubeconfig}"
    assert "oc -n cssr " in command, command
    command = command.replace("oc -n cssr ", f"{kubectl} -n {namespace} ")
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, capture_output=True, text=True)
    token = subprocess.run([*kubectl.split(), "-n", namespace, "get", "secret", SECRET, "-o",
                            "go-template={{.data.token | base64decode}}"], check=True, capture_output=True,
                           text=True).stdout
    assert re.fullmatch(r"[0-9a-f]{64}", token), f"{SECRET} holds {len(token)} characters, not 64 hex digits"
    return token


def sink_pods(kubectl: Any, namespace: str) -> list[dict[str, Any]]:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", f"eventlistener={EVENTLISTENER}",
                              "-o", "json").stdout)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def eventlistener_ready(kubectl: Any, namespace: str) -> bool:
    """Ready by Triggers' own status, its sink pod Running and ready on the real node."""
    el = json.loads(kubectl("get", "eventlistener", EVENTLISTENER, "-n", namespace, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in (el.get("status") or {}).get("conditions") or []}
    pods = sink_pods(kubectl, namespace)
    return (conditions.get("Ready") == "True" and len(pods) == 1 and pods[0]["spec"].get("nodeName") == NODE_NAME
            and pods[0]["status"].get("phase") == "Running"
            and all(s.get("ready") for s in pods[0]["status"].get("containerStatuses") or [{}]))


def wait_eventlistener(kubectl: Any, namespace: str, timeout: float = 180.0) -> float:
    began = time.monotonic()
    wait_for(f"EventListener {namespace}/{EVENTLISTENER} Ready with its sink pod on {NODE_NAME}",
             lambda: eventlistener_ready(kubectl, namespace), timeout=timeout)
    return time.monotonic() - began


def start_poster(layout: Layout, kubectl: Any, namespace: str, timeout: float = 60.0) -> str:
    """The busybox pod events are POSTed from (`kubectl exec`: one pod for many events)."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": POSTER, "namespace": namespace, "labels": POSTER_LABELS},
           "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "post", "image": node_images.busybox(layout).ref,
                                    "imagePullPolicy": "Never", "command": ["/bin/busybox", "sleep", "3600"]}]}}
    kubectl("apply", "--server-side", "--field-manager=e2e-triggers", "-f", "-", stdin=json.dumps(pod))
    wait_for(f"pod {namespace}/{POSTER} Running", lambda: json.loads(kubectl(
        "get", "pod", POSTER, "-n", namespace, "-o", "json").stdout)["status"].get("phase") == "Running",
        timeout=timeout)
    return POSTER


def sink_url(namespace: str) -> str:
    return f"http://{SINK}.{namespace}.svc.cluster.local:8080"


def post_event(kubectl: Any, namespace: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """POSTs body as JSON from the poster pod by the sink's DNS name; returns the sink's answer
    (eventListener, namespace, eventID: it answers 202 whatever its interceptor decides)."""
    header_args = [arg for name, value in {"Content-Type": "application/json", **headers}.items()
                   for arg in ("--header", f"{name}: {value}")]
    # busybox's timeout, not wget's -T: busybox-static 1.35's wget segfaults with -T (test_dns.py).
    proc = kubectl("exec", "-n", namespace, POSTER, "--", "/bin/busybox", "timeout", "30", "/bin/busybox", "wget",
                   "-q", "-O", "-", *header_args, "--post-data", json.dumps(body), sink_url(namespace))
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def sink_lines(kubectl: Any, namespace: str, event_id: str) -> list[dict[str, Any]]:
    """The sink's JSON log lines about one event."""
    logs = kubectl("logs", "-n", namespace, f"deployment/{SINK}", "--tail=-1").stdout
    lines = []
    for line in logs.splitlines():
        if event_id in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get(EVENT_ID_FIELD) == event_id:
                lines.append(entry)
    return lines


def verdict(kubectl: Any, namespace: str, event_id: str, timeout: float = 60.0) -> tuple[str, str]:
    """("accepted", params) or ("rejected", the interceptor's reason), from the sink's log line for
    the event; fails on an error line or when neither comes within `timeout`."""
    def decided() -> tuple[str, str] | None:
        for entry in sink_lines(kubectl, namespace, event_id):
            message = str(entry.get("message", ""))
            if message.startswith(ACCEPTED):
                return "accepted", message
            if message.startswith(REJECTED):
                return "rejected", message
            assert entry.get("severity") != "error", f"the sink failed on event {event_id}: {message}"
        return None
    found: tuple[str, str] = wait_for(f"the sink's verdict on event {event_id}", decided, timeout=timeout)
    return found


def pipelineruns_by_eventid(kubectl: Any, namespace: str, event_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads(kubectl("get", "pipelineruns", "-n", namespace, "-l",
                                                    f"{EVENT_ID_LABEL}={event_id}", "-o", "json").stdout)["items"]
    return runs


def cancel(kubectl: Any, namespace: str, run: str) -> None:
    """Tekton's cancel (spec.status Cancelled): its TaskRuns' pods stop loading the shared machine."""
    kubectl("patch", "pipelinerun", run, "-n", namespace, "--type=merge", "-p", '{"spec":{"status":"Cancelled"}}')
