"""tests/cluster/: the script a user runs against a real cluster (CI has none), and the run it starts.

The script passes `bash -n` and, where installed, shellcheck; it refuses unknown arguments and missing tools
before touching a cluster. Its PipelineRun (the YAML and the tkn workspace file) validates against the
schemas and starts runs the way the upgrade trigger does: same ServiceAccount, modules claim and build volume.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from install import find, rendered_repo

from lintsupport import REPO
from schemas import validate_object
from support import require_tool

SCRIPT = REPO / "tests" / "cluster" / "run.sh"
RUN = REPO / "tests" / "cluster" / "pipelinerun.yaml"
BUILD_CONTEXT = REPO / "tests" / "cluster" / "build-context.yaml"
BASH = shutil.which("bash") or "/bin/bash"


def script(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else os.environ.get("PATH", "")}
    return subprocess.run([BASH, str(SCRIPT), *args], capture_output=True, text=True, check=False, env=env,
                          timeout=30)


def test_the_script_parses():
    run = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert os.access(SCRIPT, os.X_OK)


def test_shellcheck_finds_nothing():
    require_tool("shellcheck")
    run = subprocess.run(["shellcheck", "-x", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout


def test_help_and_bad_arguments_need_no_cluster():
    helped = script("--help")
    assert helped.returncode == 0
    for flag in ("--no-install", "--no-build", "--twice", "--timeout", "-p NAME=VALUE"):
        assert flag in helped.stdout
    bad = script("--frobnicate")
    assert bad.returncode == 2
    assert "unknown argument: --frobnicate" in bad.stderr


def test_missing_tools_stop_it_before_any_cluster_call(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "dirname", "cat"):  # what runs before the tool check
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    run = script(path=str(bin_dir))
    assert run.returncode == 2
    assert "missing tool: oc" in run.stderr


def test_the_pipelinerun_and_the_workspace_file_validate():
    run = yaml.safe_load(RUN.read_text())
    assert validate_object(run) == []
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "build-context"},
             **yaml.safe_load(BUILD_CONTEXT.read_text())}
    assert validate_object(claim) == []


def test_manual_runs_start_like_the_trigger_s_runs():
    objects = rendered_repo()
    template = find(objects, "TriggerTemplate", "cssr-deploy")
    defaults = {p["name"]: p.get("default") for p in template["spec"]["params"]}
    triggered = template["spec"]["resourcetemplates"][0]["spec"]
    manual = yaml.safe_load(RUN.read_text())["spec"]
    assert manual["pipelineRef"] == triggered["pipelineRef"]
    assert manual["taskRunTemplate"]["serviceAccountName"] == defaults["service-account"]
    find(objects, "ServiceAccount", manual["taskRunTemplate"]["serviceAccountName"])
    workspaces = {w["name"]: w for w in manual["workspaces"]}
    assert workspaces["modules"]["persistentVolumeClaim"]["claimName"] == defaults["modules-claim"]
    find(objects, "PersistentVolumeClaim", defaults["modules-claim"])
    vct = yaml.safe_load(BUILD_CONTEXT.read_text())
    assert workspaces["build-context"]["volumeClaimTemplate"] == vct
    assert vct["spec"]["resources"]["requests"]["storage"] == defaults["build-context-size"]
    pipeline = find(objects, "Pipeline", "cssr-deploy")
    assert set(workspaces) == {w["name"] for w in pipeline["spec"]["workspaces"]}
    text = SCRIPT.read_text()
    assert "-s cssr-deploy" in text and "claimName=modules" in text and "tests/cluster/build-context.yaml" in text
