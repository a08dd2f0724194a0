"""report against the simulated OpenShift: the summary from TaskRuns, and cssr-deploy-state written only on success.

TaskRuns are stored as the Tekton controller writes them (labels, start and completion times,
results), so the report reads what it reads on a real cluster.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from cssr_tasks import kernels, report, verify_kmods
from cssr_tasks.errors import ConfigError, CssrError
from cssr_tasks.sim import fixtures as fx

NS = "cssr"
RUN = "cssr-deploy-run-abcde"
K416, K417 = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]
SET = kernels.kernel_set_id([K416, K417])
STATUSES = {"preflight": "Succeeded", "detect-kernel": "Succeeded", "build-cssr-init": "Succeeded",
            "build-kmods": "Succeeded", "apply-manifests": "Succeeded"}


def taskrun(task: str, *, ok: bool | None = True, start: str = "2026-11-28T10:00:00Z",
            end: str | None = "2026-11-28T10:00:03Z", results: dict[str, str] | None = None,
            run: str = RUN) -> dict:
    status = {"True": True, "False": False}
    condition = next(k for k, v in {**status, "Unknown": None}.items() if v is ok)
    return {
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": f"{run}-{task}", "namespace": NS,
                     "labels": {"tekton.dev/pipelineRun": run, "tekton.dev/pipelineTask": task}},
        "spec": {},
        "status": {"startTime": start, **({"completionTime": end} if end else {}),
                   "conditions": [{"type": "Succeeded", "status": condition}],
                   "results": [{"name": k, "type": "string", "value": v} for k, v in (results or {}).items()]},
    }


def kernel_results(set_id: str = SET, versions: list[str] | None = None) -> dict[str, str]:
    return {"kernel-set-id": set_id, "kernel-versions": json.dumps(versions or sorted([K416, K417]))}


@pytest.fixture
def seeded(sim):
    sim.load([
        taskrun("preflight", results={"ready": "true"}),
        taskrun("detect-kernel", start="2026-11-28T10:00:03Z", end="2026-11-28T10:00:04Z", results=kernel_results()),
        taskrun("build-cssr-init", end="2026-11-28T10:01:30Z", results={"built": "true", "image-url": "x"}),
        taskrun("build-kmods", results={"built-kernels": json.dumps([K417])}),
        taskrun("apply-manifests", results={"statefulset-revision": "cssr-6d5f7c9b8d"}),
        taskrun("report", ok=None, end=None),
        taskrun("detect-kernel", run="another-run", results=kernel_results("ffffffffffff", [K416])),
    ])
    return sim


def params(aggregate: str = "Succeeded", statuses: dict[str, str] | None = None, **env: str) -> report.Params:
    base = {"PARAM_PIPELINE_RUN": RUN, "PARAM_NAMESPACE": NS, "PARAM_AGGREGATE_STATUS": aggregate,
            "PARAM_TASK_STATUSES": json.dumps(STATUSES if statuses is None else statuses)}
    return report.Params.from_env({**base, **{f"PARAM_{k.upper()}": v for k, v in env.items()}})


def state(sim) -> dict[str, str] | None:
    configmap = sim.get("v1", "ConfigMap", "cssr-deploy-state", NS)
    return configmap["data"] if configmap else None


def test_the_summary_lists_every_task_with_status_duration_and_changes(seeded, cluster, log):
    report.run(params(), cluster=cluster, log=log)
    rows = [line.split(None, 1)[1] for line in log.text.splitlines() if line.startswith("[test] ")]
    table = "\n".join(rows)
    assert "TASK              STATUS     DURATION  CHANGED" in table
    assert "preflight         Succeeded  3s        -" in table
    assert "detect-kernel     Succeeded  1s        -" in table
    assert "build-cssr-init   Succeeded  1m30s     built image" in table
    assert "build-kmods       Succeeded  3s        built modules for 1 kernel(s)" in table
    assert "apply-manifests   Succeeded  3s        revision cssr-6d5f7c9b8d" in table
    assert "report (finally)  Running    -         -" in table
    # only this run's TaskRuns, selected by label
    assert any(r.resource == "taskruns" and r.query.get("labelSelector") == f"tekton.dev/pipelineRun={RUN}"
               for r in seeded.requests)


@pytest.mark.parametrize("aggregate", ["Succeeded", "Completed"])
def test_a_good_run_records_its_kernel_set(seeded, cluster, log, aggregate):
    result = report.run(params(aggregate), cluster=cluster, log=log)
    assert result == report.Result(recorded=True)
    data = state(seeded)
    assert data is not None
    assert data["kernel-set-id"] == SET
    assert json.loads(data["kernel-versions"]) == sorted([K416, K417])
    assert data["pipeline-run"] == RUN
    assert data["time"].endswith("Z")
    writes = seeded.writes()
    assert [(w.verb, w.resource, w.query.get("fieldManager")) for w in writes] == [
        ("patch", "configmaps", "cssr-deploy")]
    assert f"recorded kernel set {SET} ({K416}, {K417}) as the last good one" in log.text


def test_the_same_kernel_set_is_not_written_again(seeded, cluster, log):
    report.run(params(), cluster=cluster, log=log)
    first = state(seeded)
    seeded.clear_requests()
    assert report.run(params(), cluster=cluster, log=log).recorded
    assert seeded.writes() == []
    assert state(seeded) == first
    assert f"kernel set {SET} is already the last good one (recorded by {RUN}" in log.text


def test_a_new_kernel_set_replaces_the_old_one(seeded, cluster, log):
    seeded.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cssr-deploy-state", "namespace": NS},
                "data": {"kernel-set-id": "0123456789ab", "kernel-versions": json.dumps([K416]),
                         "pipeline-run": "older", "time": "2026-10-01T00:00:00Z"}})
    report.run(params(), cluster=cluster, log=log)
    assert state(seeded)["kernel-set-id"] == SET
    assert "(was 0123456789ab)" in log.text


@pytest.mark.parametrize(("aggregate", "statuses"), [
    ("Failed", {**STATUSES, "build-kmods": "Failed", "apply-manifests": "None"}),
    ("None", STATUSES),
], ids=["failed", "none"])
def test_a_run_that_did_not_succeed_never_changes_the_state(seeded, cluster, log, aggregate, statuses):
    seeded.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cssr-deploy-state", "namespace": NS},
                "data": {"kernel-set-id": "0123456789ab", "kernel-versions": "[]", "pipeline-run": "older",
                         "time": "2026-10-01T00:00:00Z"}})
    result = report.run(params(aggregate, statuses), cluster=cluster, log=log)
    assert result == report.Result(recorded=False)
    assert seeded.writes() == []
    assert state(seeded)["kernel-set-id"] == "0123456789ab"
    assert "the last good kernel set is unchanged: 0123456789ab (recorded by older at 2026-10-01T00:00:00Z)" \
           in log.text
    if aggregate == "Failed":
        assert f"Failed (failed: build-kmods; read the log with tkn taskrun logs {RUN}-build-kmods -n {NS})" \
               in log.text
        assert "apply-manifests   Skipped" in log.text


def test_without_taskruns_durations_are_na_and_nothing_is_recorded(sim, cluster, log):
    result = report.run(params(statuses={"preflight": "Succeeded", "skipped": "None"}), cluster=cluster, log=log)
    assert result == report.Result(recorded=False)
    assert "preflight  Succeeded  n/a       -" in log.text
    assert "skipped    Skipped    -         -" in log.text
    assert "no TaskRun of cssr-deploy-run-abcde reports kernel-set-id" in log.text
    assert sim.writes() == []


def test_a_kernel_set_id_that_does_not_match_its_versions_is_not_recorded(sim, cluster, log):
    sim.put(taskrun("detect-kernel", results=kernel_results("000000000000")))
    assert not report.run(params(statuses={"detect-kernel": "Succeeded"}), cluster=cluster, log=log).recorded
    assert "which do not match: nothing recorded" in log.text
    assert state(sim) is None


def test_no_permission_to_list_taskruns_is_a_warning(seeded, cluster, log):
    seeded.fail("GET", "/taskruns", 403, times=10)
    assert not report.run(params(), cluster=cluster, log=log).recorded
    assert "may not list TaskRuns in cssr: durations and changes are n/a" in log.text


def test_a_refused_write_fails_the_step(seeded, cluster, log):
    seeded.fail("PATCH", "/configmaps/cssr-deploy-state", 403)
    with pytest.raises(CssrError, match="could not record the last good kernel set in ConfigMap "
                                        "cssr/cssr-deploy-state"):
        report.run(params(), cluster=cluster, log=log)


def test_bad_params_are_reported_together():
    with pytest.raises(ConfigError) as caught:
        report.Params.from_env({"PARAM_AGGREGATE_STATUS": "Great", "PARAM_TASK_STATUSES": '{"a": "$(tasks.a.status)"}'})
    message = str(caught.value)
    for fragment in ("param pipeline-run is required; pass $(context.pipelineRun.name)",
                     "param namespace is required", "aggregate-status='Great' must be one of",
                     "task-statuses: a='$(tasks.a.status)' is not Succeeded, Failed or None"):
        assert fragment in message


def test_the_command_writes_recorded(seeded, run_cli):
    env = {"PARAM_PIPELINE_RUN": RUN, "PARAM_NAMESPACE": NS, "PARAM_AGGREGATE_STATUS": "Succeeded",
           "PARAM_TASK_STATUSES": json.dumps(STATUSES)}
    done = run_cli(["report"], env, sim=seeded)
    assert done.code == 0, done.err
    assert done.results == {"recorded": "true"}
    assert "built modules for 1 kernel(s)" in done.err


# -- the modules' full sha256 in cssr-deploy-state ------------------------------------------------


def module_files(root, contents: dict[str, dict[str, bytes]]) -> dict[str, dict[str, str]]:
    """Writes <root>/modules/<kver>/dpdk/<name> files; returns the full sha256 per kernel and module."""
    sums: dict[str, dict[str, str]] = {}
    for kernel, files in contents.items():
        folder = root / "modules" / kernel / "dpdk"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
            sums.setdefault(kernel, {})[report._module_name(name)] = hashlib.sha256(data).hexdigest()
    return sums


def verified_result(sums: dict[str, dict[str, str]]) -> str:
    """build-kmods' `modules` result as verify-kmods writes it: the first 16 hex digits of each sha256."""
    return json.dumps({k: {m: {"sha256": h[:verify_kmods.SHA256_HEX], "size": 1} for m, h in mods.items()}
                       for k, mods in sums.items()})


@pytest.fixture
def volume(tmp_path):
    files = {K416: {"igb_uio.ko": b"\x7fELF igb_uio 416", "rte_kni.ko.xz": b"\xfd7zXZ rte_kni 416"},
             K417: {"igb_uio.ko": b"\x7fELF igb_uio 417", "rte_kni.ko.xz": b"\xfd7zXZ rte_kni 417"}}
    return tmp_path, module_files(tmp_path, files)


def seed_verified(sim, sums) -> None:
    sim.put(taskrun("build-kmods", results={"built-kernels": json.dumps([K417]), "modules": verified_result(sums)}))


def test_the_full_sha256_of_the_verified_modules_are_recorded(seeded, cluster, log, volume):
    root, sums = volume
    seed_verified(seeded, sums)
    result = report.run(report.Params.from_env({
        "PARAM_PIPELINE_RUN": RUN, "PARAM_NAMESPACE": NS, "PARAM_AGGREGATE_STATUS": "Succeeded",
        "PARAM_TASK_STATUSES": json.dumps(STATUSES), "WORKSPACE_MODULES_PATH": str(root)}), cluster=cluster, log=log)
    assert result.recorded
    recorded = json.loads(state(seeded)["modules-sha256"])
    assert recorded == sums
    assert recorded[K417]["rte_kni"] == hashlib.sha256(b"\xfd7zXZ rte_kni 417").hexdigest()  # .ko.xz as on disk
    assert "sha256 of 4 module file(s) of 2 kernel(s)" in log.text


def test_a_module_rebuilt_since_verification_is_not_recorded(seeded, cluster, log, volume):
    root, sums = volume
    seed_verified(seeded, sums)
    (root / "modules" / K417 / "dpdk" / "igb_uio.ko").write_bytes(b"\x7fELF rebuilt by another run")
    assert report.run(params(modules_dir=str(root / "modules")), cluster=cluster, log=log).recorded
    data = state(seeded)
    assert data["kernel-set-id"] == SET and "modules-sha256" not in data
    assert f"{K417}/igb_uio on the volume no longer match what build-kmods verified" in log.text


def test_rebuilt_modules_of_the_same_kernel_set_are_recorded_again(seeded, cluster, log, volume):
    root, sums = volume
    seed_verified(seeded, sums)
    assert report.run(params(modules_dir=str(root / "modules")), cluster=cluster, log=log).recorded
    seeded.clear_requests()
    assert report.run(params(modules_dir=str(root / "modules")), cluster=cluster, log=log).recorded
    assert seeded.writes() == [], "nothing changed, nothing written"
    signed = module_files(root, {K416: {"igb_uio.ko": b"\x7fELF igb_uio 416 signed"}})
    seed_verified(seeded, {**sums, K416: {**sums[K416], **signed[K416]}})
    assert report.run(params(modules_dir=str(root / "modules")), cluster=cluster, log=log).recorded
    assert json.loads(state(seeded)["modules-sha256"])[K416]["igb_uio"] == signed[K416]["igb_uio"]


def test_a_kernel_without_modules_on_the_volume_records_no_sha256(seeded, cluster, log, tmp_path):
    module_files(tmp_path, {K416: {"igb_uio.ko": b"x"}})
    assert report.run(params(modules_dir=str(tmp_path / "modules")), cluster=cluster, log=log).recorded
    assert "modules-sha256" not in state(seeded)
    assert f"could not read the modules of {K417}" in log.text
