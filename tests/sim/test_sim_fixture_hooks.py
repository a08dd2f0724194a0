"""`--sim-fixture` calls only hooks: functions `f(sim: SimulatedCluster)` in cssr_tasks.sim (or the tests).

`pipeline run --simulated --sim-fixture os:system` once imported any module and called any function
with the started cluster, ending in a traceback (and importing runs a module's code). Both commands
that take the flag resolve it through pipeline.load_hook; each refusal is one line, exit 2, before
any import or cluster start."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cssr_tasks import cli, pipeline

REPO = Path(__file__).resolve().parents[2]
REFUSED = {
    "os:system": "a hook lives in a module of cssr_tasks.sim or tests",
    "antigravity:geohash": "a hook lives in a module of cssr_tasks.sim or tests",  # importing it opens a browser
    "cssr_tasks.simulated:x": "a hook lives in a module of cssr_tasks.sim or tests",  # a prefix, not a package
    "cssr_tasks.sim.fixtures:dtk_pullspec": "dtk_pullspec is not a hook",  # one argument, but a str
    "cssr_tasks.sim.fixtures:RELEASES": "has no function RELEASES",
    "cssr_tasks.sim.server:json": "has no function json",  # a module, not a function
    "cssr_tasks.sim.operators": "is not module:function",
}


PIPELINE = """\
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: hooks}
spec:
  tasks:
    - name: detect-kernel
      taskRef: {name: cssr-detect-kernel}
"""


@pytest.mark.parametrize(("spec", "message"), REFUSED.items(), ids=list(REFUSED))
@pytest.mark.parametrize("command", ["sim", "pipeline"])
def test_only_a_hook_is_called(command, spec, message, capsys, tmp_path):
    (tmp_path / "hooks.yaml").write_text(PIPELINE)
    argv = (["sim", "--sim-fixture", spec] if command == "sim" else
            ["pipeline", "run", str(tmp_path / "hooks.yaml"), "--tasks-dir", str(REPO / "tasks"), "--simulated",
             "--sim-fixture", spec])
    assert cli.main(argv, {}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize("spec", ["cssr_tasks.sim.operators:install", "cssr_tasks.sim.workloads:install"])
def test_the_simulators_hooks_are_hooks(spec):
    assert callable(pipeline.load_hook(spec))
