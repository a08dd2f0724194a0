"""Stage C, the runs: PipelineRuns of cssr-deploy on real Tekton, every TaskRun's pod in real
containers on the real node (containerd, runc), against the world of harness/world_c.py: kubelet-
less stand-in RHCOS nodes reporting the Debian headers' kernel, their pool, the Driver Toolkit
stand-in, SR-IOV node states, and the test operators of harness/operators.py.

What cannot run here, and so is asserted as such: the router pods must run on the target nodes,
which have no kubelet, so they stay Pending and apply-manifests ends with its one-line rollout
timeout; the run fails there (smoke-test does not run, report does). The real node's own kernel
(6.18, built without module support) is never a target: no module can exist for it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import installs
import pytest
import world
import yaml
from e2e.harness import operators, standins, tasks_image, world_c
from e2e.harness.layout import NODE_NAME, Layout

from cssr_tasks import elf
from cssr_tasks.cluster import Cluster

from conftest import NOT_SERVED, ROOT, wait_for

NAMESPACE = f"cssr-run-{int(time.time())}"
NAMESPACE_PREFIX = "cssr-run-"
STANDINS = 1
ROLLOUT_TIMEOUT = "30"
RUN_TIMEOUT = 1500.0
PIPELINE_TASKS = ["preflight", "detect-kernel", "check-cssr-init", "build-cssr-init", "build-kmods",
                  "apply-manifests", "smoke-test"]


@dataclass
class World:
    namespace: str
    kernel: str
    operators: operators.Operators
    images: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)


def overlay(tmp: Path, namespace: str, buildah_image: str) -> Path:
    """The repository root through a user's overlay into `namespace`, with the two Task param
    defaults this machine needs: the buildah image (UBI's is unreachable: a stand-in) and a short
    rollout timeout (the router pods can never start here; 900 s would only wait longer)."""
    return installs.overlay(tmp, namespace, [
        installs.task_defaults("cssr-build-init-image", {"buildah-image": buildah_image}),
        installs.task_defaults("cssr-apply-manifests", {"rollout-timeout": ROLLOUT_TIMEOUT})])


def clean_earlier(admin: Cluster, kubectl: Any) -> None:
    """Namespaces and volumes of earlier sessions' runs (kept for inspection until now)."""
    for ns in admin.list("v1", "namespaces"):
        name = ns["metadata"]["name"]
        if name.startswith(NAMESPACE_PREFIX) and name != NAMESPACE:
            kubectl("delete", "namespace", name, "--wait=false", check=False)
    for pv in admin.list("v1", "persistentvolumes", label_selector="cssr-e2e/pv"):
        if pv["metadata"]["labels"]["cssr-e2e/pv"] != NAMESPACE:
            admin.delete("v1", "persistentvolumes", pv["metadata"]["name"])
    for folder in world_c.PV_ROOT.glob(f"{NAMESPACE_PREFIX}*"):
        if not folder.name.startswith(NAMESPACE):
            shutil.rmtree(folder, ignore_errors=True)



@pytest.fixture(scope="module")
def stage_c(layout: Layout, admin: Cluster, kubectl: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    clean_earlier(admin, kubectl)
    images = world_c.images(layout)
    world.make(admin)  # the OpenShift ClusterRoles the install binds, the SR-IOV operator's namespace
    admin.apply(world_c.IMAGESTREAM_CRD, field_manager=operators.FIELD_MANAGER)
    wait_for("the ImageStream stand-in CRD", lambda: any(
        c.get("type") == "Established" and c.get("status") == "True" for c in (admin.get(
            "apiextensions.k8s.io/v1", "customresourcedefinitions", "imagestreams.image.openshift.io").get(
            "status") or {}).get("conditions") or []), timeout=30, interval=0.3)
    nodes = world_c.standin_nodes(STANDINS)
    digest = images["standin/driver-toolkit"]["digest"]
    operators.world(admin, [
        *nodes, world_c.pool(STANDINS), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "openshift"}},
        *world_c.driver_toolkit(digest), *world_c.sriov_states(nodes)])
    running = operators.Operators(admin, [n["metadata"]["name"] for n in nodes]).start()

    kubectl("create", "namespace", NAMESPACE)
    buildah = f"{world_c.buildah_ref()}@{images['standin/buildah']['digest']}"
    tmp = overlay(tmp_path_factory.mktemp("overlay-c"), NAMESPACE, buildah)
    rendered = [d for d in yaml.safe_load_all(kubectl("kustomize", str(tmp)).stdout) if d]
    served = [d for d in rendered if d["kind"] not in NOT_SERVED]
    kubectl("apply", "--server-side", "--field-manager=e2e-installer", "-f", "-", stdin=yaml.safe_dump_all(served))
    for pv in (world_c.modules_volume(NAMESPACE), world_c.data_volume(NAMESPACE)):
        admin.apply(pv, field_manager=operators.FIELD_MANAGER)
    try:
        yield World(NAMESPACE, world_c.kernel(), running, images)
    finally:
        running.stop()


def params(layout: Layout, world_: World) -> list[dict[str, str]]:
    values = {
        "node-selector": world_c.NODE_SELECTOR, "pool": world_c.POOL,
        "router-image": standins.router_ref(),
        "kmod-builder-image": standins.kmod_builder_ref(),
        "kmod-builder-command": "/usr/bin/dpdk_build.sh /",
        "image-registry": world_c.POD_REGISTRY, "registry-tls-verify": "false",
        "init-base-image": installs.base_image(),
        "hugepages-method": "none", "poll-interval": "2",
        "tasks-image": tasks_image.tasks_ref(),
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def start_run(admin: Cluster, layout: Layout, world_: World) -> str:
    run = yaml.safe_load((ROOT / "tests/cluster/pipelinerun.yaml").read_text())
    run["metadata"]["namespace"] = world_.namespace
    run["spec"]["params"] = params(layout, world_)
    run["spec"]["timeouts"] = {"pipeline": "1h"}
    created = admin.create(run)
    return str(created["metadata"]["name"])


def finished(admin: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    run = admin.get("tekton.dev/v1", "pipelineruns", name, namespace)
    conditions = (run.get("status") or {}).get("conditions") or []
    return run if conditions and conditions[0].get("status") != "Unknown" else None


def taskruns(admin: Cluster, namespace: str, run: str) -> dict[str, dict[str, Any]]:
    items = admin.list("tekton.dev/v1", "taskruns", namespace=namespace, label_selector=f"tekton.dev/pipelineRun={run}")
    return {t["metadata"]["labels"]["tekton.dev/pipelineTask"]: t for t in items}


# What apply-manifests writes (by server-side apply, as field manager cssr-deploy), where.
SUITE_OBJECTS = [("apps/v1", "statefulsets", None), ("v1", "serviceaccounts", None),
                 ("rbac.authorization.k8s.io/v1", "rolebindings", None), ("v1", "persistentvolumeclaims", None),
                 ("k8s.cni.cncf.io/v1", "network-attachment-definitions", None),
                 ("sriovnetwork.openshift.io/v1", "sriovnetworks", operators.SRIOV_NAMESPACE),
                 ("sriovnetwork.openshift.io/v1", "sriovnetworknodepolicies", operators.SRIOV_NAMESPACE)]


def suite_fields(admin: Cluster, namespace: str) -> dict[str, Any]:
    """Per object the suite manages: its generation and the time of each of the suite's managedFields
    entries (the API server moves that time only when an apply changed a field)."""
    found = {}
    for api, plural, where in SUITE_OBJECTS:
        for obj in admin.list(api, plural, namespace=where or namespace):
            mine = [(m.get("operation"), m.get("subresource", ""), m.get("time"))
                    for m in obj["metadata"].get("managedFields") or [] if m.get("manager") == "cssr-deploy"]
            if mine:
                found[f"{plural}/{obj['metadata']['name']}"] = (obj["metadata"].get("generation"), mine)
    return found


def run_once(stage_c: World, admin: Cluster, layout: Layout, label: str) -> dict[str, Any]:
    """One PipelineRun to its end, with what it cost: wall time, pods, image pulls, pod overhead."""
    admin.apply(world_c.scratch_volume(stage_c.namespace, label), field_manager=operators.FIELD_MANAGER)
    fields_before = suite_fields(admin, stage_c.namespace)
    began = time.monotonic()
    name = start_run(admin, layout, stage_c)
    run = wait_for(f"PipelineRun {name} to finish", lambda: finished(admin, stage_c.namespace, name),
                   timeout=RUN_TIMEOUT, interval=2)
    seconds = time.monotonic() - began
    tasks = taskruns(admin, stage_c.namespace, name)
    pods = {t: admin.get("v1", "pods", r["status"]["podName"], stage_c.namespace) for t, r in tasks.items()
            if (r.get("status") or {}).get("podName")}
    pod_names = {p["metadata"]["name"] for p in pods.values()}
    events = admin.list("v1", "events", namespace=stage_c.namespace)
    pulls = sorted({e["message"] for e in events if e.get("reason") == "Pulling"
                    and e["involvedObject"].get("name") in pod_names})
    result = {"name": name, "run": run, "seconds": round(seconds, 1), "taskruns": tasks, "pods": pods,
              "pulls": pulls, "overhead": {t: pod_overhead(p) for t, p in pods.items()},
              "fields_before": fields_before, "fields_after": suite_fields(admin, stage_c.namespace)}
    stage_c.runs[label] = result
    write_numbers(layout, stage_c)
    return result


def stamp(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


def pod_overhead(pod: dict[str, Any]) -> float | None:
    """Seconds from the pod's creation to its first step container's start (init containers,
    scheduling, image pulls, sandbox and network setup)."""
    starts = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        started = (state.get("terminated") or state.get("running") or {}).get("startedAt")
        if started and status["name"].startswith("step-"):
            starts.append(stamp(started))
    return round(min(starts) - stamp(pod["metadata"]["creationTimestamp"]), 1) if starts else None


def write_numbers(layout: Layout, stage_c: World) -> None:
    """out/e2e/runs.json, which report.json takes into stage C."""
    numbers = {label: {"pipelinerun": r["name"], "wall_seconds": r["seconds"],
                       "status": r["run"]["status"]["conditions"][0]["reason"],
                       "pods": len(r["pods"]), "images_pulled": len(r["pulls"]), "pulled": r["pulls"],
                       "pod_overhead_seconds": r["overhead"],
                       "taskrun_seconds": {t: taskrun_seconds(tr) for t, tr in r["taskruns"].items()}}
               for label, r in stage_c.runs.items()}
    numbers["images"] = {k: {"built": v["built"], "seconds": v["seconds"]} for k, v in stage_c.images.items()}
    (layout.out / "runs.json").write_text(json.dumps(numbers, indent=2) + "\n")


def taskrun_seconds(taskrun: dict[str, Any]) -> float | None:
    status = taskrun.get("status") or {}
    if not status.get("startTime") or not status.get("completionTime"):
        return None
    return stamp(status["completionTime"]) - stamp(status["startTime"])


def succeeded(taskrun: dict[str, Any]) -> tuple[str, str]:
    [condition] = taskrun["status"]["conditions"]
    return condition["status"], condition.get("reason", "")


def log_of(kubectl: Any, namespace: str, pod: str, container: str) -> str:
    return str(kubectl("logs", "-n", namespace, pod, "-c", container).stdout)


@pytest.fixture(scope="module")
def first_run(stage_c: World, admin: Cluster, layout: Layout) -> dict[str, Any]:
    return run_once(stage_c, admin, layout, "first")


@pytest.fixture(scope="module")
def second_run(first_run: dict[str, Any], stage_c: World, admin: Cluster, layout: Layout) -> dict[str, Any]:
    return run_once(stage_c, admin, layout, "no-op")


BUILT = ["preflight", "detect-kernel", "check-cssr-init", "build-cssr-init", "build-kmods"]


def test_first_run_builds_everything_and_stops_at_the_router_rollout(first_run: dict[str, Any]) -> None:
    tasks = first_run["taskruns"]
    assert {t: succeeded(tasks[t]) for t in BUILT} == {t: ("True", "Succeeded") for t in BUILT}
    assert succeeded(tasks["apply-manifests"]) == ("False", "StepFailed")
    assert succeeded(tasks["report"]) == ("True", "Succeeded")
    # prune runs after good runs only; smoke-test after apply-manifests: neither has a TaskRun.
    assert "smoke-test" not in tasks and "prune" not in tasks
    skipped = {s["name"] for s in first_run["run"]["status"].get("skippedTasks") or []}
    assert {"smoke-test", "prune"} <= skipped
    [condition] = first_run["run"]["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "Failed")
    results = {r["name"]: r["value"] for r in tasks["build-cssr-init"]["status"]["results"]}
    assert results["IMAGE_DIGEST"].startswith("sha256:")
    assert results["IMAGE_URL"].startswith(f"{world_c.POD_REGISTRY}/{first_run['run']['metadata']['namespace']}/")


def test_every_taskrun_pod_ran_real_containers_on_the_real_node(first_run: dict[str, Any]) -> None:
    for task, pod in first_run["pods"].items():
        assert pod["spec"]["nodeName"] == NODE_NAME, task
        statuses = pod["status"]["initContainerStatuses"] + pod["status"]["containerStatuses"]
        for status in statuses:
            assert status["containerID"].startswith("containerd://"), (task, status["name"])
            terminated = status["state"]["terminated"]
            if task in BUILT or task == "report" or status["name"] == "prepare":
                assert terminated["exitCode"] == 0, (task, status["name"], terminated)
    assert [s["state"]["terminated"]["exitCode"] for s in first_run["pods"]["apply-manifests"]["status"][
        "containerStatuses"]] == [1]


def test_apply_manifests_ends_with_one_line_naming_the_pending_router_pod(
        first_run: dict[str, Any], kubectl: Any) -> None:
    pod = first_run["pods"]["apply-manifests"]
    lines = log_of(kubectl, pod["metadata"]["namespace"], pod["metadata"]["name"], "step-apply").splitlines()
    assert lines[-1].startswith(f"[apply-manifests] error: could not pass rollout within {ROLLOUT_TIMEOUT}s: ")
    assert "pod cssr-0 Pending" in lines[-1]


def test_router_pod_is_pending_only_for_the_kubelet_less_nodes(first_run: dict[str, Any], admin: Cluster) -> None:
    namespace = first_run["run"]["metadata"]["namespace"]
    pod = admin.get("v1", "pods", "cssr-0", namespace)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    assert pod["spec"]["nodeSelector"] == {world_c.ROLE_LABEL: ""}
    # Both claims are bound (modules, cssr-data): what is left is the nodes. The real node lacks
    # the pool's label; the stand-ins carry the no-kubelet taint.
    claims = {c["metadata"]["name"]: c["status"]["phase"] for c in admin.list("v1", "persistentvolumeclaims",
                                                                            namespace=namespace)}
    assert claims["modules"] == claims["cssr-data-cssr-0"] == "Bound"
    [scheduled] = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    # Every node the pod selects is a stand-in with the taint, which the pod does not tolerate.
    # (The scheduler's event says "1 node(s) didn't match Pod's node affinity/selector, 2 node(s)
    # had untolerated taint(s)" once it retries after the claim bound, which may take minutes.)
    assert not any(t.get("key") == world_c.TAINT["key"] for t in pod["spec"].get("tolerations") or [])
    standins = admin.list("v1", "nodes", label_selector=world_c.NODE_SELECTOR)
    assert standins and all(world_c.TAINT in n["spec"]["taints"] for n in standins)
    assert all(n["metadata"]["name"].startswith(world_c.STANDIN_PREFIX) for n in standins)


def test_modules_are_on_the_volume_with_the_stand_in_kernel_vermagic(first_run: dict[str, Any],
                                                                    stage_c: World) -> None:
    tree = world_c.PV_ROOT / f"{stage_c.namespace}-modules" / "modules" / stage_c.kernel
    for module in ("igb_uio", "rte_kni"):
        read = elf.read_module(tree / "dpdk" / f"{module}.ko")
        assert (read.vermagic or "").split()[0] == stage_c.kernel
        assert read.info("name") == module
    dep = (tree / "modules.dep").read_text().splitlines()
    assert any(line.startswith("dpdk/igb_uio.ko:") and "uio.ko" in line for line in dep), dep
    recorded = json.loads({r["name"]: r["value"] for r in first_run["taskruns"]["build-kmods"]["status"][
        "results"]}["built-kernels"])
    assert recorded == [stage_c.kernel]


def test_report_records_no_kernel_set_after_a_failed_run(first_run: dict[str, Any], admin: Cluster,
                                                         kubectl: Any) -> None:
    namespace = first_run["run"]["metadata"]["namespace"]
    assert admin.get_or_none("v1", "configmaps", "cssr-deploy-state", namespace) is None
    pod = first_run["pods"]["report"]
    log = log_of(kubectl, namespace, pod["metadata"]["name"], "step-report")
    assert "apply-manifests   Failed" in log and "build-kmods       Succeeded" in log


def test_second_run_with_nothing_changed_builds_nothing(first_run: dict[str, Any], second_run: dict[str, Any],
                                                        kubectl: Any) -> None:
    tasks = second_run["taskruns"]
    assert "build-cssr-init" not in tasks
    skipped = {s["name"]: s for s in second_run["run"]["status"].get("skippedTasks") or []}
    # Tekton names the when guard that skipped it (reason: "PipelineRun was stopping" once
    # apply-manifests failed later; a run that succeeds says "When Expressions evaluated to false").
    assert skipped["build-cssr-init"]["whenExpressions"] == [{"input": "true", "operator": "in", "values": ["false"]}]
    checked = {r["name"]: r["value"] for r in tasks["check-cssr-init"]["status"]["results"]}
    first = {r["name"]: r["value"] for r in first_run["taskruns"]["build-cssr-init"]["status"]["results"]}
    assert checked["exists"] == "true" and checked["image-url"] == first["IMAGE_URL"]
    kmods = {r["name"]: r["value"] for r in tasks["build-kmods"]["status"]["results"]}
    before = {r["name"]: r["value"] for r in first_run["taskruns"]["build-kmods"]["status"]["results"]}
    assert json.loads(kmods["built-kernels"]) == []
    assert json.loads(kmods["modules"]) == json.loads(before["modules"])
    pod = second_run["pods"]["build-kmods"]
    log = kubectl("logs", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"], "--all-containers").stdout
    assert "kmod-build: building" not in log
    # Every image the run needs was pulled by the first one: the node pulls nothing.
    assert second_run["pulls"] == []


def test_second_run_changes_nothing_the_suite_applied(second_run: dict[str, Any]) -> None:
    # apply-manifests applies every object again (server-side apply PATCHes, 200 in the audit log),
    # and the API server persists none: no generation and no managedFields time of the suite moves.
    assert len(second_run["fields_before"]) >= 8, second_run["fields_before"]
    assert second_run["fields_after"] == second_run["fields_before"]
