"""tasks/cssr-build-kmods.yaml's contract: the signing key reaches the commit step only, the layout step
expands no glob, and prepare plans for signing without seeing the key (issue 14 points 2 and 5).

Tekton's step-level workspaces (docs/workspaces.md, "Isolating Workspaces to Specific Steps or
Sidecars"): once a step lists a workspace under its own `workspaces`, only the steps that list
it get it mounted; the others do not see it at all.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from modsupport import install

TASK = Path(__file__).parents[2] / "tasks" / "cssr-build-kmods.yaml"


def task() -> dict:
    return yaml.safe_load(TASK.read_text())["spec"]


def step(name: str) -> dict:
    return next(s for s in task()["steps"] if s["name"] == name)


def test_the_signing_key_is_mounted_in_the_commit_step_only():
    spec = task()
    declared = {w["name"]: w for w in spec["workspaces"]}
    assert declared["signing-key"]["optional"] is True and declared["signing-key"]["readOnly"] is True
    listing = {s["name"]: [w["name"] for w in s.get("workspaces") or []] for s in spec["steps"]}
    assert listing == {"layout": [], "prepare": [], "build": [], "commit": ["signing-key"], "verify": [], "nodes": []}
    # Juniper's privileged builder and the cssr-init image never see the key, nor its folder by another name
    for name in ("layout", "build"):
        mounts = [m["mountPath"] for m in step(name).get("volumeMounts") or []]
        assert not any("signing" in m for m in mounts)
    # prepare learns only whether the workspace is bound
    assert not step("prepare").get("env")
    template = {e["name"]: e["value"] for e in spec["stepTemplate"]["env"]}
    assert template["PARAM_SIGNING_KEY_BOUND"] == "$(workspaces.signing-key.bound)"
    assert not any("signing-key.path" in value for value in template.values())


def layout_env(tmp_path: Path, kernels: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "cssr-init"
    fake.write_text(f'#!/bin/sh\necho "$CSSR_KERNEL" >> {tmp_path}/laid-out.txt\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PARAM_KERNELS": kernels,
            "PARAM_KERNEL_TREE_DIR": str(tmp_path / "volume")}


@pytest.mark.parametrize("kernels", ['["*"]', '["5.14.0-1.el9.x86_64", "/etc/*"]', '["?"]', '["[a-z]*"]'],
                         ids=["star", "path-glob", "question-mark", "bracket"])
def test_the_layout_step_expands_no_glob_and_refuses_it(tmp_path, kernels):
    """The original failure: `for kernel in $kernels` turned ["*"] into the names of the files around it."""
    (tmp_path / "work").mkdir()
    for name in ("a-file", "b-file"):
        (tmp_path / "work" / name).write_text("")
    done = subprocess.run(["sh", "-c", step("layout")["script"]], env=layout_env(tmp_path, kernels),
                          cwd=tmp_path / "work", capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert "is not a kernel version" in done.stderr
    assert "a-file" not in done.stderr
    laid = (tmp_path / "laid-out.txt").read_text().split() if (tmp_path / "laid-out.txt").exists() else []
    assert not any("file" in k or "*" in k for k in laid)


def test_the_layout_step_lays_out_each_kernel(tmp_path):
    env = layout_env(tmp_path, json.dumps(["5.14.0-1.el9.x86_64", "5.14.0-2.el9.x86_64+rt"]))
    done = subprocess.run(["sh", "-c", step("layout")["script"]], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "laid-out.txt").read_text().split() == ["5.14.0-1.el9.x86_64", "5.14.0-2.el9.x86_64+rt"]


@pytest.mark.tools
def test_prepare_plans_a_rebuild_of_unsigned_modules_when_the_key_is_bound_elsewhere(volume, run_cli, tmp_path):
    """prepare cannot read the key (not mounted there): PARAM_SIGNING_KEY_BOUND=true makes it plan for signing."""
    kernel = volume.kernels[0]
    install(kernel, volume.modules_dir)  # verified, unsigned
    absent = str(tmp_path / "not-mounted-here")
    unbound = run_cli(["build-kmods", "prepare", *volume.args(kernel, signing_secret_dir=absent)])
    assert unbound.code == 0, unbound.err
    assert "nothing to build" in unbound.err
    assert run_cli(["build-kmods", "commit", *volume.args(kernel, signing_secret_dir=absent)]).code == 0
    bound = run_cli(["build-kmods", "prepare", *volume.args(kernel, signing_secret_dir=absent,
                                                            signing_key_bound="true")])
    assert bound.code == 0, bound.err
    assert "1 kernel(s) to build" in bound.err
    assert "is not signed" in bound.err
    assert "no signing key in" not in bound.err  # prepare never looks for the key
