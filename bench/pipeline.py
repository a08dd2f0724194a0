"""Benchmark: the whole cssr-deploy Pipeline run locally, first run against a no-op re-run.

Runs pipelines/cssr-deploy.yaml with the local executor against `make demo`'s world
(cssr_tasks.sim.demo: the simulated OpenShift, a registry with fake Driver Toolkit images, buildah,
real igb_uio builds; stand-ins where a tool is missing, as printed). For each run: wall time, the
requests the steps sent to the API and how many changed something, the registry writes; per task:
its wall time, the time inside its steps, and the executor's own overhead (task wall time minus
step time: binding params, writing scripts, reading results, mirroring TaskRuns).

    .venv/bin/python bench/pipeline.py      (as root: steps get their volumes in a mount namespace)
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cssr_tasks.sim.demo import Demo, Tools
from cssr_tasks.tekton.run import Executor, Outcome


def one_run(demo: Demo, name: str) -> tuple[Outcome, dict[str, float]]:
    assert demo.sim is not None
    demo.sim.clear_requests()
    registry_before = len(demo.registry_writes())
    started = time.monotonic()
    outcome = demo.run(name)
    wall = time.monotonic() - started
    # Completed: a task was skipped by its when guard (build-cssr-init, when the image exists), as on a re-run
    if outcome.status not in ("Succeeded", "Completed"):
        raise SystemExit(f"pipeline: run {name} ended {outcome.status}: "
                         + "; ".join(f"{t.name}: {t.message}" for t in outcome.tasks if t.status != "Succeeded"))
    return outcome, {"wall": wall, "requests": len(demo.sim.requests), "writes": len(demo.sim.writes()),
                     "registry_writes": len(demo.registry_writes()) - registry_before}


def main() -> int:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("pipeline: skipped, the local executor needs root and unshare to give steps their volumes")
        return 0
    tools = Tools.detect()
    with tempfile.TemporaryDirectory(prefix="cssr-bench-pipeline-") as tmp:
        started = time.monotonic()
        with Demo(Path(tmp), tools) as demo:
            setup = time.monotonic() - started
            checking = time.monotonic()
            Executor(demo.options("bench-check"), out=io.StringIO())  # what every run does before its first step
            checks = time.monotonic() - checking
            runs = [("first run", *one_run(demo, "bench-first")), ("no-op re-run", *one_run(demo, "bench-again"))]

    print(f"pipeline: cssr-deploy, 7 tasks + finally, against the simulated OpenShift; {os.cpu_count()} CPU(s)")
    for line in tools.describe():
        print(f"  {line}")
    print(f"  demo world ready (registry, Driver Toolkit images, cluster, fake SSR) in {setup:.1f}s")
    print(f"\n{'run':<13} {'wall':>7} {'API requests':>13} {'API writes':>11} {'registry writes':>16}  status")
    for label, outcome, numbers in runs:
        print(f"{label:<13} {numbers['wall']:>6.2f}s {numbers['requests']:>13.0f} {numbers['writes']:>11.0f} "
              f"{numbers['registry_writes']:>16.0f}  {outcome.status}")
    for label, outcome, _ in runs:
        print(f"\n{label}: {'task':<18} {'wall':>7} {'in steps':>8} {'overhead':>9}  steps")
        total_overhead = 0.0
        ran = [t for t in outcome.tasks if t.status != "Skipped"]
        for task in outcome.tasks:
            inside = sum(seconds for _, seconds in task.steps)
            overhead = (task.duration or 0.0) - inside
            total_overhead += overhead
            if task.status == "Skipped":
                print(f"{'':<{len(label) + 2}}{task.name:<18} skipped ({task.reason})")
                continue
            print(f"{'':<{len(label) + 2}}{task.name:<18} {task.duration or 0:>6.2f}s {inside:>7.2f}s "
                  f"{overhead * 1000:>7.0f}ms  {len(task.steps)}")
        between = outcome.duration - sum(t.duration or 0.0 for t in outcome.tasks)
        print(f"{'':<{len(label) + 2}}executor overhead: {checks * 1000:.0f}ms of checks before the run, "
              f"{total_overhead * 1000:.0f}ms inside tasks ({total_overhead * 1000 / len(ran):.0f}ms per "
              f"task run), {between * 1000:.0f}ms around them (TaskRun records, pipeline results, the table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
