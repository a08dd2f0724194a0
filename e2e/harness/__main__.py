"""`python -m e2e.harness e2e|up|test|down`: what `make e2e` and `make e2e-down` run.

e2e   build what is stale, start what is not running healthy, install the CRDs, run e2e/tests,
      write out/e2e/report.json, then stop the cluster unless E2E_KEEP=1;
up    the same without tests, leaving the cluster running;
build build every binary: Stage A's and Stage B's (Tekton controller and webhook, tkn);
test  the tests only, against the running cluster;
down  stop every recorded process.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import build, control_plane, crds, images, registry, report, tekton
from .layout import Layout
from .log import say


def up(layout: Layout, rep: report.Report) -> None:
    with rep.step("A", "build") as step:
        step.update(build.build(layout))
    with rep.step("A", "cluster") as step:
        step.update(control_plane.up(layout))
    with rep.step("A", "crds") as step:
        step.update(crds.install(layout))
    restarted = not all(c.get("reused") for c in rep.stages["A"]["steps"]["cluster"].values()
                        if isinstance(c, dict))
    with rep.step("B", "build") as step:
        step.update(build.build(layout, build.STAGE_B))
    with rep.step("B", "tekton") as step:
        step.update(tekton.up(layout, restart=restarted))
    with rep.step("C", "images") as step:
        step.update(images.up(layout))
    say(f"cluster up; kubeconfig: {layout.admin_kubeconfig}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["e2e", "up", "test", "down", "build"])
    args = parser.parse_args(argv)
    layout = Layout()
    if args.command == "down":
        stopped = control_plane.down(layout, [*tekton.down_order(), registry.NAME], tekton.STOP_TIMEOUTS)
        say(f"stopped {len(stopped)} recorded processes: {', '.join(stopped) or 'none'}")
        return 0
    if args.command == "build":
        for name, result in build.build(layout, build.STAGE_A + build.STAGE_B).items():
            say(f"{name}: {'built' if result['built'] else 'up to date'} in {result['seconds']} s")
        return 0
    rep = report.Report(layout)
    keep = os.environ.get("E2E_KEEP", "") not in ("", "0")
    try:
        if args.command in ("e2e", "up"):
            up(layout, rep)
        if args.command in ("e2e", "test"):
            with rep.step("A", "tests") as step:
                report.run_tests(layout, step, "A")
            with rep.step("B", "tests") as step:
                report.run_tests(layout, step, "B")
    except Exception as e:
        say(f"FAILED: {e}")
    finally:
        rep.finish(build.last_builds(layout))
        if args.command == "e2e" and not keep:
            control_plane.down(layout, [*tekton.down_order(), registry.NAME], tekton.STOP_TIMEOUTS)
        elif args.command == "e2e":
            say("E2E_KEEP=1: cluster left running; `make e2e-down` stops it")
    say(f"report: {layout.report} ({'passed' if rep.passed else 'FAILED'})")
    return 0 if rep.passed else 1


if __name__ == "__main__":
    sys.exit(main())
