"""Summarize a cssr-deploy run, and record its kernel set as the last good one when it succeeded.

The finally task of the pipeline. Statuses come from params (`$(tasks.<t>.status)`, which
Tekton fills even for failed and skipped tasks); durations and results come from the run's
TaskRuns (label tekton.dev/pipelineRun), as Tekton recorded them. Results are deliberately
not params: a finally task whose param names a result that was never produced is skipped by
Tekton, and the report must run most of all when the run failed.

ConfigMap `cssr-deploy-state` (keys kernel-set-id, kernel-versions, modules-sha256,
pipeline-run, time) is written only when the run Succeeded or Completed, and only when its
kernel set or its modules differ from the recorded ones: `pipeline-run` and `time` name the run
that first proved them, and a re-run that changes nothing writes nothing.

modules-sha256 holds the full sha256 of each module file of the kernel set, read from the
modules volume (the Task's optional modules workspace); the build-kmods result `modules` holds
only their first 16 hex digits, to keep the results small, and each file must still match it:
a file rebuilt since build-kmods verified it is not recorded as verified.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import kernels
from .cluster import Cluster
from .errors import ApiError, CssrError, Forbidden, NotFound
from .log import Log
from .params import Reader
from .tekton import summary

NEEDS_CLUSTER = True
STATE_CONFIGMAP = "cssr-deploy-state"
TEKTON_API = "tekton.dev/v1"
STATUSES = ("Succeeded", "Failed", "Completed", "None")
GOOD = ("Succeeded", "Completed")
MODULE_SUFFIXES = (".ko", ".ko.xz")


@dataclass(frozen=True)
class Params:
    pipeline_run: str = field(default="", metadata={"help": "the PipelineRun's name"})
    namespace: str = field(default="", metadata={"help": "the PipelineRun's namespace; the state ConfigMap's too"})
    aggregate_status: str = field(default="None", metadata={"help": "$(tasks.status)"})
    task_statuses: dict[str, str] = field(default_factory=dict,
                                          metadata={"help": "JSON object: pipeline task -> $(tasks.<t>.status)"})
    modules_dir: str = field(default="", metadata={
        "help": "the modules volume's modules folder (<kver>/dpdk/<module>.ko); default: modules/ of the "
                "modules workspace when bound"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        params = cls(
            # Tekton refuses longer names than 63 (pkg/apis/validate/metadata.go: a subdomain of at most 63).
            pipeline_run=read.name("pipeline-run", required=True, subdomain=True, max_length=63,
                                   hint="pass $(context.pipelineRun.name)"),
            namespace=read.name("namespace", required=True, hint="pass $(context.pipelineRun.namespace)"),
            aggregate_status=read.choice("aggregate-status", "None", STATUSES),
            task_statuses=read.json("task-statuses", {}, kind=dict,
                                    hint='e.g. {"preflight":"$(tasks.preflight.status)"}'),
            modules_dir=read.path("modules-dir") or (
                str(Path(environ["WORKSPACE_MODULES_PATH"]) / "modules") if environ.get("WORKSPACE_MODULES_PATH")
                else ""),
        )
        for task, status in params.task_statuses.items():
            if status not in ("Succeeded", "Failed", "None"):
                read.fail(f"param task-statuses: {task}={status!r} is not Succeeded, Failed or None; pass "
                          f"$(tasks.{task}.status)")
        read.done()
        return params


@dataclass(frozen=True)
class Result:
    recorded: bool


def run(params: Params, *, cluster: Cluster, log: Log) -> Result:
    taskruns = _taskruns(params, cluster, log)
    _print_summary(params, taskruns, log)
    if params.aggregate_status not in GOOD:
        failed = [t for t, s in params.task_statuses.items() if s == "Failed"]
        hint = (f" (failed: {', '.join(failed)}; read the log with tkn taskrun logs {params.pipeline_run}-{failed[0]} "
                f"-n {params.namespace})") if failed else ""
        log.info(f"PipelineRun {params.pipeline_run}: {params.aggregate_status}{hint}")
        state = _state(cluster, params, log)
        kept = (f"{state.get('kernel-set-id')} (recorded by {state.get('pipeline-run')} at {state.get('time')})"
                if state else "none recorded yet")
        log.info(f"the last good kernel set is unchanged: {kept}")
        return Result(recorded=False)
    log.info(f"PipelineRun {params.pipeline_run}: {params.aggregate_status}")
    return Result(recorded=_record(params, taskruns, cluster, log))


def _taskruns(params: Params, cluster: Cluster, log: Log) -> dict[str, dict[str, Any]]:
    """The run's TaskRuns by pipeline task; empty (durations n/a) where there are none to read."""
    try:
        items = cluster.list(TEKTON_API, "taskruns", namespace=params.namespace,
                             label_selector=f"tekton.dev/pipelineRun={params.pipeline_run}")
    except Forbidden:
        log.warn(f"may not list TaskRuns in {params.namespace}: durations and changes are n/a; give the "
                 "pipeline's ServiceAccount list on taskruns.tekton.dev")
        return {}
    except NotFound:
        items = []
    if not items:
        log.info(f"no TaskRuns of {params.pipeline_run} in {params.namespace} (the local executor records them only "
                 "with --simulated): durations and changes are n/a")
    found: dict[str, dict[str, Any]] = {}
    for item in sorted(items, key=lambda t: t["metadata"]["name"]):
        task = (item["metadata"].get("labels") or {}).get("tekton.dev/pipelineTask") or item["metadata"]["name"]
        found[task] = item
    return found


def _seconds(taskrun: dict[str, Any] | None) -> float | None:
    status = (taskrun or {}).get("status") or {}
    try:
        start = datetime.fromisoformat(str(status["startTime"]))
        end = datetime.fromisoformat(str(status["completionTime"]))
    except (KeyError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def _results(taskrun: dict[str, Any] | None) -> dict[str, str]:
    items = ((taskrun or {}).get("status") or {}).get("results") or []
    return {str(r.get("name")): r["value"] if isinstance(r.get("value"), str) else json.dumps(r.get("value"))
            for r in items if r.get("name")}


def _taskrun_status(taskrun: dict[str, Any]) -> str:
    for condition in (taskrun.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Succeeded":
            return {"True": "Succeeded", "False": "Failed"}.get(str(condition.get("status")), "Running")
    return "Running"


def _print_summary(params: Params, taskruns: dict[str, dict[str, Any]], log: Log) -> None:
    rows = []
    for task, status in params.task_statuses.items():
        taskrun = taskruns.get(task)
        shown = "Skipped" if status == "None" else status
        seconds = _seconds(taskrun)
        changed = summary.changes(_results(taskrun)) if status == "Succeeded" and taskrun else "-"
        rows.append((task, shown, summary.duration(seconds) if taskrun or status != "None" else "-", changed))
    for task, taskrun in taskruns.items():
        if task not in params.task_statuses:  # finally tasks, this one included
            status = _taskrun_status(taskrun)
            changed = summary.changes(_results(taskrun)) if status == "Succeeded" else "-"
            seconds = _seconds(taskrun)
            rows.append((f"{task} (finally)", status, summary.duration(seconds) if seconds is not None else "-",
                         changed))
    log.info(f"summary of PipelineRun {params.pipeline_run} in {params.namespace}:")
    log.info(summary.table(("TASK", "STATUS", "DURATION", "CHANGED"), rows))


def _state(cluster: Cluster, params: Params, log: Log) -> dict[str, str]:
    try:
        configmap = cluster.get_or_none("v1", "configmaps", STATE_CONFIGMAP, params.namespace)
    except ApiError as e:
        log.warn(f"could not read ConfigMap {params.namespace}/{STATE_CONFIGMAP}: {e}")
        return {}
    return {str(k): str(v) for k, v in ((configmap or {}).get("data") or {}).items()}


def _record(params: Params, taskruns: dict[str, dict[str, Any]], cluster: Cluster, log: Log) -> bool:
    found = [(name, _results(tr)) for name, tr in taskruns.items()
             if _taskrun_status(tr) == "Succeeded" and "kernel-set-id" in _results(tr)]
    if not found:
        log.warn(f"no TaskRun of {params.pipeline_run} reports kernel-set-id: the last good kernel set is not "
                 "recorded (does the pipeline run detect-kernel?)")
        return False
    task, results = found[0]
    set_id = results["kernel-set-id"]
    try:
        versions = json.loads(results.get("kernel-versions", ""))
    except ValueError:
        versions = None
    if not isinstance(versions, list) or kernels.kernel_set_id(versions) != set_id:
        log.warn(f"task {task} reports kernel-set-id {set_id} with kernel-versions {results.get('kernel-versions')!r}, "
                 "which do not match: nothing recorded")
        return False
    compact = json.dumps(kernels.kernel_set(versions), separators=(",", ":"))
    sums = _modules_sha256(params.modules_dir, kernels.kernel_set(versions), _verified(taskruns), log)
    state = _state(cluster, params, log)
    if state.get("kernel-set-id") == set_id and state.get("kernel-versions") == compact and \
            (sums is None or state.get("modules-sha256") == sums):
        log.info(f"kernel set {set_id} is already the last good one (recorded by {state.get('pipeline-run')} at "
                 f"{state.get('time')}); nothing to change")
        return True
    configmap = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": STATE_CONFIGMAP, "namespace": params.namespace,
                     "labels": {"app.kubernetes.io/name": "cssr-deploy",
                                "app.kubernetes.io/managed-by": "cssr-deploy"}},
        "data": {"kernel-set-id": set_id, "kernel-versions": compact, "pipeline-run": params.pipeline_run,
                 "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 **({"modules-sha256": sums} if sums is not None else {})},
    }
    try:
        cluster.apply(configmap)
    except CssrError as e:
        raise CssrError(f"could not record the last good kernel set in ConfigMap {params.namespace}/"
                        f"{STATE_CONFIGMAP}: {e}") from e
    before = f" (was {state['kernel-set-id']})" if state.get("kernel-set-id") else ""
    log.info(f"recorded kernel set {set_id} ({', '.join(kernels.kernel_set(versions))}) as the last good one in "
             f"ConfigMap {params.namespace}/{STATE_CONFIGMAP}{before}")
    return True


def _verified(taskruns: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """kernel -> module -> sha256 prefix, from the `modules` result of the run's build-kmods (verify-kmods)."""
    for taskrun in taskruns.values():
        try:
            value = json.loads(_results(taskrun).get("modules", ""))
        except ValueError:
            continue
        if isinstance(value, dict):
            return {str(k): {str(m): str(r.get("sha256", "")) for m, r in mods.items() if isinstance(r, dict)}
                    for k, mods in value.items() if isinstance(mods, dict)}
    return {}


def _modules_sha256(modules_dir: str, kernel_list: list[str], verified: dict[str, dict[str, str]],
                    log: Log) -> str | None:
    """JSON kernel -> module -> full sha256 of the module files on the volume; None when they cannot be recorded."""
    if not modules_dir:
        log.info("no modules workspace: the modules' sha256 are not recorded (bind the modules workspace)")
        return None
    found: dict[str, dict[str, str]] = {}
    for kernel in kernel_list:
        folder = Path(modules_dir) / kernel / "dpdk"
        try:
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(MODULE_SUFFIXES))
            found[kernel] = {_module_name(p.name): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        except OSError as e:
            log.warn(f"could not read the modules of {kernel} in {folder}: {e.strerror}; their sha256 are not "
                     "recorded")
            return None
        if not found[kernel]:
            log.warn(f"{folder} holds no module: the modules' sha256 are not recorded")
            return None
    changed = [f"{kernel}/{module}" for kernel, modules in verified.items() for module, prefix in modules.items()
               if kernel in found and not found[kernel].get(module, "").startswith(prefix or "-")]
    if changed:
        log.warn(f"{', '.join(changed)} on the volume no longer match what build-kmods verified (another run "
                 "rebuilt them?): the modules' sha256 are not recorded")
        return None
    count = sum(len(m) for m in found.values())
    log.info(f"sha256 of {count} module file(s) of {len(found)} kernel(s) read from {modules_dir}")
    return json.dumps(found, sort_keys=True, separators=(",", ":"))


def _module_name(file_name: str) -> str:
    return next(file_name[: -len(s)] for s in sorted(MODULE_SUFFIXES, key=len, reverse=True) if file_name.endswith(s))
