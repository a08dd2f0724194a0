"""Conformance: every example of Tekton's examples/v1 (at the version crds/go.mod pins) keeps its class.

tests/pipeline/tekton_examples.yaml classifies each example:
- run-and-match: the executor runs it, and the run ends as Tekton's CI expects every example outside
  no-ci to end (test/examples_test.go waits for condition Succeeded=True: Succeeded, or Completed
  when a when-guard skips a task); `tasks` holds each task's status, which the example's own
  checks (scripts that exit 1 on a wrong value) and its when-guards decide;
- refused: the executor refuses it before the run, and every refusal names a feature of the
  documented unsupported list (docs/pipeline-run-locally.md);
- not-runnable: it cannot run here; `reason` says why (the network, the image's own entrypoint,
  run-level fields a Pipeline cannot carry, a cluster setting, YAML Tekton's own admission rejects):
  tekton_examples.NOT_HERE names the example's own text that shows it, or the wrapper finds it.
There is no fourth class: an example that runs and ends otherwise than Tekton's CI expects, or a
refusal that names no documented feature, fails the test (a silent divergence).
Any change of class, status, feature or reason fails the test. To rewrite the file after a deliberate
change: TEKTON_EXAMPLES_WRITE=1 pytest tests/pipeline/test_tekton_examples.py, then review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .tekton_examples import Observed, documented_features, example_files, module_dir, run_example

EXPECTATIONS = Path(__file__).with_name("tekton_examples.yaml")
CI_OK = ("Succeeded", "Completed")


def classify(observed: Observed) -> dict[str, Any]:
    if observed.kind == "refused" and observed.features and all("[unsupported: " in p for p in observed.problems):
        return {"class": "refused", "features": observed.features}
    if observed.kind == "run" and all(s in CI_OK for s in observed.status.split(",")):
        return {"class": "run-and-match", "status": observed.status, "tasks": observed.tasks}
    reason = "; ".join(_short(p) for p in observed.problems)
    if observed.kind in ("not-runnable", "wrapper-refused") or (  # or YAML Tekton's own admission rejects
            observed.kind == "refused" and all("Tekton's admission rejects it" in p for p in observed.problems)):
        return {"class": "not-runnable", "reason": reason}
    return {"class": "diverges", "reason": reason, "status": observed.status, "tasks": observed.tasks}


def _short(problem: str) -> str:
    """A problem without the module cache's folder, so that the file holds the same text on any machine."""
    return problem.split("/examples/v1/", 1)[-1]


@pytest.fixture(scope="module")
def observed() -> dict[str, Observed]:
    root = module_dir()
    return {relative: run_example(root, relative) for relative in example_files(root)}


def test_every_example_keeps_its_class(observed):
    expected = yaml.safe_load(EXPECTATIONS.read_text()) if EXPECTATIONS.exists() else {}
    now = {relative: classify(o) for relative, o in observed.items()}
    silent = {k: v for k, v in now.items() if v["class"] == "diverges"}
    assert not silent, "silent divergences (fix the executor, or refuse the feature before the run):\n" + \
        "\n".join(f"{k}: {v}" for k, v in silent.items())
    if os.environ.get("TEKTON_EXAMPLES_WRITE"):
        EXPECTATIONS.write_text(yaml.safe_dump(now, sort_keys=True, width=110))
        expected = now
    assert sorted(now) == sorted(expected), "examples were added or removed: rewrite the expectations"
    changed = {k: (expected[k], now[k]) for k in now if now[k] != expected[k]}
    assert not changed, "\n".join(f"{k}: expected {e}, now {n}" for k, (e, n) in changed.items())


def test_every_refusal_names_a_documented_feature(observed):
    documented = documented_features()
    expected = yaml.safe_load(EXPECTATIONS.read_text())
    for relative, o in observed.items():
        if expected[relative]["class"] == "refused":
            assert o.features, f"{relative}: refused without naming a feature: {o.problems}"
            assert set(o.features) <= documented, f"{relative}: {o.features} not all in the docs' list"
            for problem in o.problems:
                where = problem.split(": ", 1)[0]
                assert re.search(r"/examples/v1/.+\.yaml:\d+$", where), f"{relative}: no file:line in {problem}"


def test_the_examples_are_the_pinned_ones():
    root = module_dir()
    assert root.name == f"pipeline@{module_dir.__globals__['module_version']()}"
    assert len(example_files(root)) == 152
