"""Conformance: every example of Tekton's examples/v1 (at the version crds/go.mod pins) keeps its class.

tests/pipeline/tekton_examples.yaml classifies each example:
- run-and-match: the executor runs it, and the run ends as Tekton's CI expects every example outside
  no-ci to end (test/examples_test.go waits for condition Succeeded=True: Succeeded, or Completed
  when a when-guard skips a task); `tasks` holds each task's status, which the example's own
  checks (scripts that exit 1 on a wrong value) and its when-guards decide;
- refused: the executor refuses it before the run, and every refusal names a feature of the
  documented unsupported list (docs/pipeline-run-locally.md);
- not-runnable: it cannot run here; `reason` says why (network, the image's own entrypoint or
  tools, run-level fields a Pipeline cannot carry, YAML Tekton's own admission rejects);
- diverges: the executor runs it and ends otherwise than Tekton would; `observed` records how.
  Each is a known gap, listed, never silent; fixing one moves it to run-and-match.
Any change of class, status or feature fails the test. To rewrite the file after a deliberate
change: TEKTON_EXAMPLES_WRITE=1 pytest tests/pipeline/test_tekton_examples.py, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from .tekton_examples import Observed, documented_features, example_files, module_dir, run_example

EXPECTATIONS = Path(__file__).with_name("tekton_examples.yaml")
CI_OK = ("Succeeded", "Completed")


def classify(relative: str, observed: Observed, previous: dict[str, Any]) -> dict[str, Any]:
    if observed.kind == "refused" and observed.features and all("[unsupported: " in p for p in observed.problems):
        return {"class": "refused", "features": observed.features}
    if observed.kind == "run" and all(s in CI_OK for s in observed.status.split(",")):
        return {"class": "run-and-match", "status": observed.status, "tasks": observed.tasks}
    reason = previous.get("reason") or "; ".join(observed.problems)[:300]
    if observed.kind == "refused":  # a refusal that blames the YAML of an example Tekton runs
        rejected = all("Tekton's admission rejects it" in p for p in observed.problems)
        return {"class": "not-runnable" if rejected else "diverges", "reason": reason}
    if observed.kind == "run":
        return {"class": previous.get("class") if previous.get("class") == "not-runnable" else "diverges",
                "reason": previous.get("reason", ""), "observed": {"status": observed.status, "tasks": observed.tasks}}
    return {"class": "not-runnable", "reason": reason}


@pytest.fixture(scope="module")
def observed() -> dict[str, Observed]:
    root = module_dir()
    return {relative: run_example(root, relative) for relative in example_files(root)}


def test_every_example_keeps_its_class(observed):
    expected = yaml.safe_load(EXPECTATIONS.read_text()) if EXPECTATIONS.exists() else {}
    now = {relative: classify(relative, o, expected.get(relative, {})) for relative, o in observed.items()}
    if os.environ.get("TEKTON_EXAMPLES_WRITE"):
        EXPECTATIONS.write_text(yaml.safe_dump(now, sort_keys=True, width=110))
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
                assert "/examples/v1/" in problem.split(": ", 1)[0], f"{relative}: no file:line in {problem}"


def test_the_examples_are_the_pinned_ones():
    root = module_dir()
    assert root.name == f"pipeline@{module_dir.__globals__['module_version']()}"
    assert len(example_files(root)) == 152
