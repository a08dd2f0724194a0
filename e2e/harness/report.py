"""out/e2e/report.json: per stage, pass or fail and where the time went; and the test run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .layout import E2E, ROOT, Layout
from .log import say


class TestsFailed(RuntimeError):
    pass


class Report:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.began = time.time()
        self.stages: dict[str, dict[str, Any]] = {}

    @contextmanager
    def step(self, stage: str, name: str) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {}
        steps = self.stages.setdefault(stage, {"steps": {}})["steps"]
        steps[name] = entry
        began = time.monotonic()
        try:
            yield entry
            entry["passed"] = True
        except Exception as e:
            entry["passed"] = False
            entry["error"] = str(e)
            raise
        finally:
            entry["wall_seconds"] = round(time.monotonic() - began, 2)

    @property
    def passed(self) -> bool:
        return bool(self.stages) and all(
            s.get("passed", False) for stage in self.stages.values() for s in stage["steps"].values())

    def finish(self, builds: dict[str, Any]) -> None:
        for stage in self.stages.values():
            stage["passed"] = all(s.get("passed", False) for s in stage["steps"].values())
            stage["timings"] = timings(stage["steps"], builds)
        # Numbers the tests wrote in this run: the PipelineRuns' (tests/test_pipeline_run.py), the
        # trigger's (test_triggers.py), the data path's (test_multus_smoke.py), the upgrade's
        # timeline (test_upgrade.py).
        for stage, key, name in (("C", "runs", "runs.json"), ("D", "triggers", "triggers.json"),
                                 ("D", "data_path", "multus.json"), ("D", "upgrade", "upgrade.json")):
            path = self.layout.out / name
            if stage in self.stages and path.exists() and path.stat().st_mtime >= self.began:
                self.stages[stage][key] = json.loads(path.read_text())
        document = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.began)),
            "wall_seconds": round(time.time() - self.began, 1),
            "passed": self.passed,
            "stages": self.stages,
            "cannot_exist_here": {"C": "router pods (the target nodes are kubelet-less stand-ins: the real node's "
                                       "kernel has no module support), so apply-manifests' rollout, smoke-test "
                                       "and a Succeeded run; hugepages; SR-IOV VFs",
                                  "D": "the same router pods; the data path is shown by a router stand-in "
                                       "StatefulSet on the real node, and the NetworkPolicy of triggers/ is not "
                                       "enforced (the bridge and macvlan plugins enforce none)"},
            "last_builds": builds,
        }
        self.layout.out.mkdir(parents=True, exist_ok=True)
        self.layout.report.write_text(json.dumps(document, indent=2) + "\n")


def timings(steps: dict[str, Any], builds: dict[str, Any]) -> dict[str, Any]:
    """The numbers a reader wants first: build time of this run (warm when nothing changed), the
    last real (cold or warm-cache) build per component of the stage, time to a ready API (A) or
    to a webhook the API server reaches (B), test wall time."""
    built = steps.get("build", {})
    mine = {n: b for n, b in builds.items() if n in built}
    if "triggers" in steps:
        ready = {f"{name}_seconds": steps[name].get("wall_seconds") for name in ("kernels", "dns", "triggers", "multus")
                 if name in steps}
    elif "node" in steps:
        node = steps["node"]
        ready = {"seconds_to_ready_node": node.get("seconds_to_ready_node"),
                 "node_ready_seconds": node.get("node_ready_seconds"),
                 "containerd_ready_seconds": node.get("containerd", {}).get("seconds_to_ready"),
                 "kubelet_reused": node.get("kubelet", {}).get("reused"),
                 "images": node.get("images")}
    elif "tekton" in steps:
        webhook = steps["tekton"].get("tekton-webhook", {})
        ready = {"tekton_config_apply_seconds": steps["tekton"].get("apply_seconds"),
                 "webhook_ready_seconds": webhook.get("seconds_to_ready"), "webhook_reused": webhook.get("reused"),
                 "controller_ready_seconds": steps["tekton"].get("tekton-controller", {}).get("seconds_to_ready")}
    else:
        apiserver = steps.get("cluster", {}).get("kube-apiserver", {})
        ready = {"api_ready_seconds": apiserver.get("seconds_to_ready"), "api_reused": apiserver.get("reused"),
                 "crds_seconds": steps.get("crds", {}).get("wall_seconds")}
    return {
        "build_this_run_seconds": built.get("wall_seconds"),
        "built_this_run": sorted(n for n, b in built.items() if isinstance(b, dict) and b.get("built")),
        "last_build_seconds": {n: b.get("seconds") for n, b in mine.items()},
        "last_build_cold_go_cache": {n: b.get("cold_go_cache") for n, b in mine.items()},
        **ready,
        "tests_seconds": steps.get("tests", {}).get("wall_seconds"),
    }


# Stage B's tests need Tekton's webhook and controller, Stage C's the node; every other test
# file is Stage A's.
STAGE_B_TESTS = ("test_tekton.py",)
STAGE_C_TESTS = ("test_node.py", "test_images.py", "test_pipeline_run.py", "test_tekton_differential.py")
# Stage D's need cluster DNS, Tekton Triggers, Multus and the upgrade's kernels.
STAGE_D_TESTS = ("test_dns.py", "test_kernel_trees.py", "test_triggers.py", "test_multus_smoke.py", "test_upgrade.py")


def run_tests(layout: Layout, entry: dict[str, Any], stage: str) -> None:
    """Run the stage's tests of e2e/tests with pytest; fill `entry` with the counts and the time,
    also when tests fail."""
    junit = layout.out / ("junit.xml" if stage == "A" else f"junit-{stage}.xml")
    junit.unlink(missing_ok=True)
    tests = E2E / "tests"
    if stage == "A":
        selection = [str(tests), *(f"--ignore={tests / name}" for name in STAGE_B_TESTS + STAGE_C_TESTS
                                   + STAGE_D_TESTS)]
    else:
        names = {"B": STAGE_B_TESTS, "C": STAGE_C_TESTS, "D": STAGE_D_TESTS}[stage]
        selection = [str(tests / name) for name in names]
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "testpaths=e2e/tests",
            *selection, f"--junitxml={junit}"]
    say(f"run {' '.join(argv[2:])}")
    began = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=dict(os.environ), check=False)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if junit.exists():
        root = ET.parse(junit).getroot()
        suite = root.find("testsuite") if root.tag == "testsuites" else root
        if suite is not None:
            counts = {k: int(suite.get(k, 0)) for k in counts}
            entry["failed"] = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                               if case.find("failure") is not None or case.find("error") is not None]
    entry.update(counts, seconds=round(time.monotonic() - began, 1), junit=str(junit))
    if proc.returncode:
        raise TestsFailed(f"pytest exited {proc.returncode}: {counts}")
