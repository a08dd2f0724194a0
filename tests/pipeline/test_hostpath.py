"""modules-storage=hostpath: the real pipelines/cssr-deploy.yaml on a simulated cluster without RWX storage.

Two of the demo's three workers are the router's target nodes. build-kmods applies DaemonSet
cssr-modules; the simulated DaemonSet controller (sim/daemonsets.py) makes a pod on each target
node, whose init containers really run (sim/pods.py): the cssr-init image lays the trees out,
the stand-in builder compiles igb_uio.ko with kbuild, commit and depmod index it, verify-kmods
checks it, each on the node's own /mnt/cssr (a folder per node here). The router StatefulSet
mounts that hostPath and no modules claim is made. A second run builds nothing and makes no new
DaemonSet generation nor StatefulSet revision; a bad value fails build-kmods with one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cssr_tasks.elf import read_module
from cssr_tasks.kmod_checks import verify_tree
from cssr_tasks.sim import demo as simdemo
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.demo import Demo

from .test_cssr_deploy import Run, demo_tools, run

pytestmark = [pytest.mark.tools, pytest.mark.slow]

K416 = fx.RELEASES["4.16"][1]
MODULES = ("igb_uio", "rte_kni")
LABEL = "cssr.juniper.net/router"
TARGETS = ("worker-1", "worker-2")
SELECTOR = f"node-role.kubernetes.io/worker=,{LABEL}=true"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with Demo(tmp_path_factory.mktemp("hostpath"), demo_tools()) as world:
        assert world.sim is not None
        for name in TARGETS:
            node = world.sim.get("v1", "Node", name)
            assert node is not None
            node["metadata"]["labels"][LABEL] = "true"
            world.sim.put(node)
        yield world
        assert world.workloads is not None and world.workloads.errors == []


def hostpath(demo: Demo, name: str, **params: str) -> Run:
    return run(demo, name, **{"modules-storage": "hostpath", "node-selector": SELECTOR, **params})


def node_modules(demo: Demo, node: str) -> Path:
    assert demo.workloads is not None and demo.workloads.daemonsets.runner is not None
    runner = demo.workloads.daemonsets.runner
    return runner.node_path(node, "/mnt/cssr/modules")  # type: ignore[attr-defined,no-any-return]


def daemonset(demo: Demo) -> dict:
    assert demo.sim is not None
    found = demo.sim.get("apps/v1", "DaemonSet", "cssr-modules", simdemo.NAMESPACE)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def first(demo: Demo) -> Run:
    return hostpath(demo, "first")


def test_each_target_node_holds_verified_indexed_modules_and_the_router_mounts_them(demo, first):
    assert first.outcome.status == "Succeeded", first.log
    assert json.loads(first.results("build-kmods")["built-kernels"]) == [K416]
    assert set(json.loads(first.results("build-kmods")["modules"])[K416]) == set(MODULES)
    # one build per target node, none on the third worker, none in the TaskRun's workspace
    assert demo.builds.read_text().split() == [K416, K416]
    for node in TARGETS:
        folder = node_modules(demo, node)
        checks = verify_tree(folder, K416, MODULES)
        assert all(c.ok for c in checks), [c.describe() for c in checks]
        built = read_module(folder / K416 / "dpdk" / "igb_uio.ko")
        assert built.info("description") == "UIO driver for Intel IGB PCI cards"  # kbuild's, not synthetic
        dep = (folder / K416 / "modules.dep").read_text().splitlines()
        assert "dpdk/igb_uio.ko: kernel/drivers/uio/uio.ko" in dep
        assert (folder.parent / "kernels" / K416 / "Makefile").is_file()  # laid out by the cssr-init image
        assert f"node {node}: verified {K416}; built {K416}" in first.log
    assert not node_modules(demo, "worker-3").exists()
    workspace = demo.workdir / "volumes" / "modules"  # prune's finally still takes its lock there
    assert not (workspace / "kernels").exists() and not (workspace / "modules" / K416).exists()

    ds = daemonset(demo)
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"node-role.kubernetes.io/worker": "", LABEL: "true"}
    status = ds["status"]
    assert (status["desiredNumberScheduled"], status["numberReady"], status["updatedNumberScheduled"]) == (2, 2, 2)
    assert status["observedGeneration"] == ds["metadata"]["generation"] == 1

    assert demo.sim is not None
    sts = demo.sim.get("apps/v1", "StatefulSet", "cssr", simdemo.NAMESPACE)
    assert sts is not None
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "modules")
    assert volume == {"name": "modules", "hostPath": {"path": "/mnt/cssr", "type": "DirectoryOrCreate"}}
    assert demo.sim.get("v1", "PersistentVolumeClaim", "modules", simdemo.NAMESPACE) is None
    assert first.results("report")["recorded"] == "true"


def test_a_second_run_builds_nothing_and_rolls_nothing(demo, first):
    assert first.outcome.status == "Succeeded", first.log
    builds = demo.builds.read_text()
    generation = daemonset(demo)["metadata"]["generation"]
    second = hostpath(demo, "second")
    assert (second.outcome.status, second.outcome.exit_code) == ("Completed", 0), second.log
    assert json.loads(second.results("build-kmods")["built-kernels"]) == []
    assert demo.builds.read_text() == builds
    assert daemonset(demo)["metadata"]["generation"] == generation
    assert "unchanged DaemonSet cssr/cssr-modules (generation 1" in second.log
    assert second.outcome.results["statefulset-revision"] == first.outcome.results["statefulset-revision"]
    assert second.writes == []  # no object changed: no DaemonSet, StatefulSet, pod or claim write
    assert second.registry_writes == []


def test_a_bad_modules_storage_fails_build_kmods_with_one_line(demo, first):
    assert first.outcome.status == "Succeeded", first.log
    bad = hostpath(demo, "bad", **{"modules-storage": "hostPath"})
    assert bad.outcome.status == "Failed"
    assert bad.statuses()["build-kmods"] == "Failed"
    assert bad.statuses()["apply-manifests"] == "Skipped"
    assert "layout: param modules-storage='hostPath' must be one of pvc, hostpath" in bad.log
    assert not [w for w in bad.writes if w.resource in ("daemonsets", "statefulsets", "persistentvolumeclaims")]
