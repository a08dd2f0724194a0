"""Stage B: Tekton Pipelines' own webhook and controller (the pinned release, built here, run as
host processes with their own ServiceAccount tokens) judge the suite on the real API server.

The suite is installed as the README tells users (`oc apply -k .`), through an overlay into a
namespace of the test's own; the real admission webhook accepts every Task and the Pipeline and
refuses a broken Task; the controller picks up a TaskRun; the real `tkn` CLI starts a run of
the Pipeline with README.md's flags. No pod runs before Stage C (no kubelet).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.harness import build, tekton
from e2e.harness.layout import E2E, TEKTON_WEBHOOK_PORT, Layout
from e2e.harness.processes import Processes

from cssr_tasks.cluster import Cluster

from conftest import NOT_SERVED, ROOT, audit_events, wait_for

ADMIN = "cssr-e2e-admin"
MUTATING = "webhook.pipeline.tekton.dev"
VALIDATING = "validation.webhook.pipeline.tekton.dev"
# What the API server writes into a request's audit event for the first mutating webhook it called.
MUTATION_ANNOTATION = "mutation.webhook.admission.k8s.io/round_0_index_0"


def configuration(kubectl: Any, resource: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", resource, name, "-o", "json").stdout)


@pytest.mark.parametrize("resource,name", [(r, n) for r, names in tekton.WEBHOOK_CONFIGURATIONS.items()
                                           for n in names])
def test_webhook_configurations_are_registered_by_the_webhook_itself(kubectl: Any, resource: str,
                                                                     name: str) -> None:
    [hook] = configuration(kubectl, resource, name)["webhooks"]
    service = hook["clientConfig"]["service"]
    assert (service["name"], service["namespace"], service["port"]) == (
        tekton.WEBHOOK_SERVICE, tekton.NAMESPACE, TEKTON_WEBHOOK_PORT)
    # caBundle, rules and path are Knative's writing, not in Tekton's YAML: the webhook runs.
    assert hook["clientConfig"]["caBundle"] and hook["rules"] and service["path"]
    assert hook["failurePolicy"] == "Fail"
    if name in (MUTATING, VALIDATING):
        covered = {(g, r) for rule in hook["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
        assert {("tekton.dev", "tasks"), ("tekton.dev", "pipelines")} <= covered


@pytest.mark.parametrize("process", tekton.ORDER)
def test_tekton_processes_speak_with_their_own_service_account_tokens(layout: Layout, process: str) -> None:
    user = f"system:serviceaccount:{tekton.NAMESPACE}:{tekton.ACCOUNTS[process]}"
    started = Processes(layout.processes).records()[process].started
    events = audit_events(layout, user=user, since=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1)))
    assert events, f"no request of {user} in the audit log"
    # Only the authorizer's refusals: a 403 of NamespaceLifecycle (a pod made in a namespace being
    # deleted after a test) is allowed by RBAC and says so in the same annotation.
    refused = [e for e in events if (e.get("annotations") or {}).get("authorization.k8s.io/decision") != "allow"]
    assert refused == [], f"Tekton's own RBAC refused: {[(e['verb'], e['requestURI']) for e in refused][:5]}"


def install(kubectl: Any, namespace: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The repository root's kustomization through a user's overlay into `namespace`, applied as the
    admin; BuildConfig and ImageStream are OpenShift APIs with no CRD (left out and asserted)."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace, "resources": [os.path.relpath(ROOT, tmp_path)]}))
    rendered = [d for d in yaml.safe_load_all(kubectl("kustomize", str(tmp_path)).stdout) if d]
    assert {d["kind"] for d in rendered} & NOT_SERVED == NOT_SERVED
    served = [d for d in rendered if d["kind"] not in NOT_SERVED]
    kubectl("apply", "--server-side", "--field-manager=e2e-installer", "-f", "-", stdin=yaml.safe_dump_all(served))
    return served


def test_suite_install_is_accepted_by_the_real_admission_webhook(
        layout: Layout, kubectl: Any, admin: Cluster, namespace: str, tmp_path: Path) -> None:
    began = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    served = install(kubectl, namespace, tmp_path)
    tekton_objects = [d for d in served if d["apiVersion"] == "tekton.dev/v1"]
    assert sorted(d["kind"] for d in tekton_objects) == ["Pipeline"] + ["Task"] * 9
    for doc in tekton_objects:
        plural = doc["kind"].lower() + "s"
        assert admin.get("tekton.dev/v1", plural, doc["metadata"]["name"], namespace)
    # The API server records each webhook it called on the request: every Task and the Pipeline
    # went through Tekton's mutating webhook (its validating one is shown by the refusals below).
    deadline = time.monotonic() + 10
    while True:
        called = {(e["objectRef"]["resource"], e["objectRef"]["name"])
                  for e in audit_events(layout, user=ADMIN, since=began)
                  if e.get("objectRef", {}).get("namespace") == namespace and e["responseStatus"]["code"] < 300
                  and MUTATING in (e.get("annotations") or {}).get(MUTATION_ANNOTATION, "")}
        wanted = {(d["kind"].lower() + "s", d["metadata"]["name"]) for d in tekton_objects}
        if wanted <= called or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert wanted - called == set()


def broken_task(namespace: str, step: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": "broken", "namespace": namespace},
            "spec": {"params": [{"name": "declared", "type": "string", "description": "a param"}],
                     "steps": [{"name": "step", "image": "registry.invalid/x:1", **step}]}}


@pytest.mark.parametrize("step,reason", [
    ({"script": "echo hi", "command": ["sh"]}, "script cannot be used with command"),
    ({"command": ["echo"], "args": ["$(params.undeclared)"]}, "non-existent variable"),
], ids=["script-and-command", "undeclared-param"])
def test_a_broken_task_is_refused_by_the_webhook(kubectl: Any, admin: Cluster, namespace: str,
                                                 step: dict[str, Any], reason: str) -> None:
    refused = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(broken_task(namespace, step)),
                      check=False)
    assert refused.returncode != 0
    assert f'admission webhook "{VALIDATING}" denied the request' in refused.stderr
    assert reason in refused.stderr
    assert admin.get_or_none("tekton.dev/v1", "tasks", "broken", namespace) is None
    # The same Task without the fault is accepted: the refusal was for the fault.
    kubectl("apply", "--server-side", "-f", "-",
            stdin=json.dumps(broken_task(namespace, {"script": "echo $(params.declared)"})))



def test_controller_picks_up_a_taskrun_and_makes_its_pod(admin: Cluster, namespace: str) -> None:
    # The pod runs as the namespace's default ServiceAccount, which the controller-manager makes.
    wait_for("the default ServiceAccount", lambda: admin.get_or_none("v1", "serviceaccounts", "default", namespace))
    admin.create({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                  "metadata": {"name": "picked", "namespace": namespace},
                  "spec": {"taskSpec": {"steps": [{"name": "s", "image": "registry.invalid/x:1", "script": "true"}]}}})
    run = wait_for("the TaskRun's pod or failure", lambda: picked_up(admin, namespace))
    pod_name = run["status"]["podName"]
    assert pod_name, f"the controller made no pod: {run['status']}"
    [condition] = run["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("Succeeded", "Unknown")
    pod = admin.get("v1", "pods", pod_name, namespace)
    assert pod["metadata"]["labels"]["tekton.dev/taskRun"] == "picked"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["step-s"]



def picked_up(admin: Cluster, namespace: str) -> dict[str, Any] | None:
    """The TaskRun once the controller has made its pod or given up on it."""
    run = admin.get("tekton.dev/v1", "taskruns", "picked", namespace)
    status = run.get("status") or {}
    failed = any(c.get("status") == "False" for c in status.get("conditions") or [])
    return run if status.get("podName") or failed else None


def test_the_webhook_converts_a_task_between_versions(kubectl: Any, namespace: str) -> None:
    # Stored as v1, read as v1beta1: the API server calls the CRD's conversion webhook (Tekton's).
    task = broken_task(namespace, {"script": "echo $(params.declared)"})
    kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(task))
    read = json.loads(kubectl("get", "tasks.v1beta1.tekton.dev", "broken", "-n", namespace, "-o", "json").stdout)
    assert read["apiVersion"] == "tekton.dev/v1beta1"
    assert read["spec"]["steps"][0]["script"] == "echo $(params.declared)"


def tkn(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `tkn` CLI (tektoncd/cli, built from build/tkn/go.mod) with the admin kubeconfig."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(layout.cache), "KUBECONFIG": str(layout.admin_kubeconfig)}
    try:
        return subprocess.run([str(layout.binary("tkn")), *args], capture_output=True, text=True, env=env,
                              timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"tkn {' '.join(args)} did not exit within 60 s: {exc.stdout!r} {exc.stderr!r}") from exc


def test_tkn_version_is_the_pinned_client(layout: Layout) -> None:
    pinned = build.pinned_version(E2E / "build" / "tkn", "github.com/tektoncd/cli")
    shown = tkn(layout, "version", "--component", "client")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == pinned.lstrip("v")


def test_tkn_pipeline_start_as_the_readme_says_starts_a_run(
        layout: Layout, kubectl: Any, admin: Cluster, namespace: str, tmp_path: Path) -> None:
    install(kubectl, namespace, tmp_path)
    # README.md "Run it", without --showlog: no pod runs before Stage C, so there is no log to follow.
    started = tkn(layout, "pipeline", "start", "cssr-deploy", "-n", namespace, "-s", "cssr-deploy",
                  "--use-param-defaults", "-w", "name=modules,claimName=modules",
                  "-w", f"name=build-context,volumeClaimTemplateFile={ROOT / 'tests/cluster/build-context.yaml'}")
    assert started.returncode == 0, f"tkn exited {started.returncode}: {started.stderr.strip()}"
    match = re.search(r"^PipelineRun started: (\S+)$", started.stdout, re.MULTILINE)
    assert match, f"tkn printed no PipelineRun name: {started.stdout!r}"
    name = match.group(1)

    run = admin.get("tekton.dev/v1", "pipelineruns", name, namespace)
    pipeline = admin.get("tekton.dev/v1", "pipelines", "cssr-deploy", namespace)
    defaults = {p["name"]: p["default"] for p in pipeline["spec"]["params"] if "default" in p}
    # Every param has a default (settings.yaml): tkn prompts for none and leaves them to the Pipeline.
    assert [p["name"] for p in pipeline["spec"]["params"] if "default" not in p] == []
    assert run["spec"].get("params") in (None, [])
    assert run["spec"]["pipelineRef"]["name"] == "cssr-deploy"
    assert run["spec"]["taskRunTemplate"]["serviceAccountName"] == "cssr-deploy"
    workspaces = {w["name"]: w for w in run["spec"]["workspaces"]}
    assert workspaces["modules"]["persistentVolumeClaim"]["claimName"] == "modules"
    assert workspaces["build-context"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "1Gi"

    # The real controller accepted the run (a validation failure sets Succeeded=False at once) and
    # made the first TaskRun, preflight, and its pod (Pending: there is no kubelet before Stage C).
    def preflight() -> dict[str, Any] | None:
        current = admin.get("tekton.dev/v1", "pipelineruns", name, namespace)
        conditions = (current.get("status") or {}).get("conditions") or []
        assert not any(c.get("status") == "False" for c in conditions), f"the controller failed the run: {conditions}"
        runs = admin.request("GET", f"/apis/tekton.dev/v1/namespaces/{namespace}/taskruns",
                             query={"labelSelector": f"tekton.dev/pipelineRun={name}"}, what="the run's TaskRuns")
        made = [r for r in runs["items"] if (r.get("status") or {}).get("podName")]
        return {"run": current, "taskruns": made} if made else None

    found = wait_for(f"the TaskRun of preflight with a pod for PipelineRun {name}", preflight)
    [condition] = found["run"]["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("Succeeded", "Unknown")
    assert condition["reason"] in ("Running", "Started"), condition
    # The run's resolved spec, as the controller stores it, carries the settings as its params.
    resolved = found["run"]["status"]["pipelineSpec"]["params"]
    assert {p["name"]: p.get("default") for p in resolved} == defaults
    [taskrun] = found["taskruns"]
    assert taskrun["metadata"]["labels"]["tekton.dev/pipelineTask"] == "preflight"
    assert taskrun["spec"]["serviceAccountName"] == "cssr-deploy"
    pod = admin.get("v1", "pods", taskrun["status"]["podName"], namespace)
    assert pod["metadata"]["labels"]["tekton.dev/pipelineRun"] == name
    assert pod["spec"]["serviceAccountName"] == "cssr-deploy"
    assert pod["status"]["phase"] == "Pending"
