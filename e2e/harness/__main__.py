"""`python -m e2e.harness e2e|up|test|down`: what `make e2e` and `make e2e-down` run.

e2e   build what is stale, start what is not running healthy, install the CRDs, run e2e/tests,
      write out/e2e/report.json, then stop the cluster unless E2E_KEEP=1;
up    the same without tests, leaving the cluster running;
build build every binary: Stage A's, Stage B's (Tekton controller and webhook, tkn), Stage C's
      (kubelet, kube-proxy, crictl) and Stage D's (CoreDNS, Tekton Triggers, Multus);
test  the tests only, against the running cluster;
down  stop every recorded process, remove the node's pods, mounts, cgroups and the links.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import (
    build,
    control_plane,
    crds,
    dns,
    hostnet,
    images,
    multus,
    node,
    registry,
    report,
    tekton,
    triggers,
    world_d,
)
from .layout import Layout
from .log import say
from .processes import Processes


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
    with rep.step("C", "build") as step:
        step.update(build.build(layout, build.STAGE_C))
    with rep.step("C", "node") as step:
        step.update(node.up(layout))
    # Stage D: what the upgrade trigger and the data path need on the node: cluster DNS, Tekton
    # Triggers as pods, Multus with macvlan, the upgrade's kernels.
    with rep.step("D", "build") as step:
        step.update(build.build(layout, build.STAGE_D))
    with rep.step("D", "kernels") as step:
        step.update(world_d.up(layout))
    with rep.step("D", "dns") as step:
        step.update(dns.up(layout))
    with rep.step("D", "multus") as step:
        step.update(multus.up(layout))
    with rep.step("D", "triggers") as step:
        step.update(triggers.up(layout))
    say(f"cluster up; kubeconfig: {layout.admin_kubeconfig}")


class LeftBehind(RuntimeError):
    pass


def stop(layout: Layout) -> list[str]:
    """Everything `up` started, node first (its pods and mounts), then Tekton and the control
    plane, then the links (the API server's address goes last)."""
    recorded = {name: r.pid for name, r in Processes(layout.processes).records().items()}
    node.down(layout)
    multus.down(layout)
    control_plane.down(layout, [dns.NAME, *tekton.down_order(), registry.NAME], tekton.STOP_TIMEOUTS)
    hostnet.remove()
    links = [*hostnet.LINKS, *multus.PARENTS]
    left = node.leftovers(layout, recorded) + [f"link {n}" for n in links if hostnet.link_exists(n)]
    if left:
        raise LeftBehind(f"down left behind: {'; '.join(left)}")
    return list(recorded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["e2e", "up", "test", "down", "build"])
    args = parser.parse_args(argv)
    layout = Layout()
    if args.command == "down":
        try:
            stopped = stop(layout)
        except LeftBehind as e:
            say(str(e))
            return 1
        say(f"stopped {len(stopped)} recorded processes: {', '.join(stopped) or 'none'}; no mount, link or "
            "cgroup of the cluster is left")
        return 0
    if args.command == "build":
        for name, result in build.build(layout, build.STAGE_A + build.STAGE_B + build.STAGE_C
                                        + build.STAGE_D).items():
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
            with rep.step("C", "tests") as step:
                report.run_tests(layout, step, "C")
            with rep.step("D", "tests") as step:
                report.run_tests(layout, step, "D")
    except Exception as e:
        say(f"FAILED: {e}")
    finally:
        if args.command == "e2e" and not keep:
            # What `make e2e-down` runs, checked in every run: no process, mount or link left.
            try:
                with rep.step("C", "down") as step:
                    step["stopped"] = stop(layout)
            except LeftBehind as e:
                say(f"FAILED: {e}")
        elif args.command == "e2e":
            say("E2E_KEEP=1: cluster left running; `make e2e-down` stops it")
        rep.finish(build.last_builds(layout))
    say(f"report: {layout.report} ({'passed' if rep.passed else 'FAILED'})")
    return 0 if rep.passed else 1


if __name__ == "__main__":
    sys.exit(main())
