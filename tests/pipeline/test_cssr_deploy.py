"""The real pipelines/cssr-deploy.yaml, run locally against the simulated OpenShift, with real tools.

One demo environment (cssr_tasks.sim.demo.Demo, what `make demo` runs) serves the module: a real
docker-registry on 127.0.0.1 holding fake Driver Toolkit images of OpenShift 4.16 and 4.17 whose
kernel trees are Debian's headers announcing the RHEL kernels, buildah building and pushing the
cssr-init image, igb_uio.ko compiled by kbuild against those trees, the router answered by a
FakeSsr. The runs follow each other as on a cluster's life: the first builds and deploys; the
second builds, pushes and changes nothing: check-cssr-init finds the image, the `when` guard skips
build-cssr-init, and the tasks after it still run (asserted from the simulated API's request log
and the registry's access log); a node's upgrade to 4.17 makes the third build exactly that kernel; an
API that refuses the StatefulSet fails apply-manifests, skips the smoke test and still runs the
report, which records nothing. A misspelled result reference fails before the run, naming its
line. Last, `python -m cssr_tasks.sim.demo` with every stand-in (no buildah, no registry, no
headers) is still green and writes the applied manifests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cssr_tasks import kernels
from cssr_tasks.elf import read_module
from cssr_tasks.errors import ConfigError
from cssr_tasks.kmod_checks import verify_tree
from cssr_tasks.sim import demo as simdemo
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim import kmod_standin
from cssr_tasks.sim.demo import Demo, Tools
from cssr_tasks.sim.images import REGISTRY_BIN
from cssr_tasks.sim.server import Recorded
from cssr_tasks.tekton.run import Outcome

from support import require_tool

pytestmark = [pytest.mark.tools, pytest.mark.slow]

K416, K417 = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]
MODULES = ("igb_uio", "rte_kni")


def require_root() -> None:
    """The executor gives steps their volumes at a pod's paths in a private mount namespace: root only.

    Like a missing tool, a failure under CI=true, where the suite runs as root."""
    require_tool("unshare", "mount")
    if os.geteuid() != 0:
        message = "the local executor mounts step volumes only as root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Run:
    outcome: Outcome
    log: str
    writes: list[Recorded]  # what the run changed through the simulated API
    registry_writes: list[str]  # PUT, POST, PATCH the registry answered during the run

    def results(self, task: str) -> dict[str, str]:
        return self.outcome.task(task).results

    def statuses(self) -> dict[str, str]:
        return {t.name: t.status for t in self.outcome.tasks}


def demo_tools() -> Tools:
    """What a demo with real builds needs (root, buildah, a registry, kbuild and Debian's headers), found."""
    require_root()
    headers, source = kmod_standin.debian_headers(), kmod_standin.igb_uio_source()
    require_tool("buildah", REGISTRY_BIN, "openssl", "make", "gcc", str(headers or "/" + kmod_standin.HEADERS_GLOB),
                 str(source or "/" + kmod_standin.SOURCE_GLOB))
    tools = Tools.detect()
    assert (tools.buildah, tools.registry, tools.headers) == (True, True, True)
    return tools


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with Demo(tmp_path_factory.mktemp("demo"), demo_tools()) as world:
        yield world
        assert world.workloads is not None and world.workloads.errors == []


def run(demo: Demo, name: str, **params: str) -> Run:
    assert demo.sim is not None
    demo.sim.clear_requests()
    before = len(demo.registry_writes())
    out = io.StringIO()
    outcome = demo.run(name, out=out, **params)
    return Run(outcome, out.getvalue(), demo.sim.writes(), demo.registry_writes()[before:])


def state(demo: Demo) -> dict[str, str]:
    assert demo.sim is not None
    found = demo.sim.get("v1", "ConfigMap", "cssr-deploy-state", simdemo.NAMESPACE)
    return dict((found or {}).get("data") or {})


def statefulset(demo: Demo) -> dict:
    assert demo.sim is not None
    found = demo.sim.get("apps/v1", "StatefulSet", "cssr", simdemo.NAMESPACE)
    assert found is not None
    return found


def modules_dir(demo: Demo) -> Path:
    return demo.workdir / "volumes" / "modules" / "modules"


@pytest.fixture(scope="module")
def first(demo: Demo) -> Run:
    return run(demo, "first")


def test_the_first_run_builds_and_deploys(demo, first):
    assert first.outcome.status == "Succeeded", first.log
    assert first.outcome.exit_code == 0
    set_id = kernels.kernel_set_id([K416])
    assert first.outcome.results["kernel-set-id"] == set_id

    check = first.results("check-cssr-init")
    assert check == {"exists": "false", "image-url": f"{demo.host}/cssr/cssr-init:{set_id}", "image-digest": ""}
    image = first.results("build-cssr-init")
    assert image["built"] == "true"
    assert image["image-url"] == check["image-url"]
    assert first.outcome.results["init-image"] == check["image-url"]
    assert set(first.results("apply-manifests")) == {"statefulset-revision", "pods"}  # it reads no registry
    assert f"PUT /v2/cssr/cssr-init/manifests/{set_id}" in first.registry_writes

    assert json.loads(first.results("build-kmods")["built-kernels"]) == [K416]
    assert demo.builds.read_text().split() == [K416]  # the stand-in builder ran once, for that kernel
    checks = verify_tree(modules_dir(demo), K416, MODULES)
    assert all(c.ok for c in checks), [c.describe() for c in checks]
    built = read_module(modules_dir(demo) / K416 / "dpdk" / "igb_uio.ko")
    assert built.vermagic is not None and built.vermagic.startswith(f"{K416} SMP")
    assert built.info("description") == "UIO driver for Intel IGB PCI cards"  # kbuild's, not a synthetic module
    assert (demo.workdir / "volumes" / "modules" / "kernels" / K416 / "Makefile").is_file()  # laid out by cssr-init

    sts = statefulset(demo)
    assert first.outcome.results["statefulset-revision"] == sts["status"]["updateRevision"]
    assert sts["status"]["readyReplicas"] == 1
    # the pods wait for what build-kmods put on the volume (indexed by depmod); their template names no kernel set
    init = sts["spec"]["template"]["spec"]["initContainers"][0]
    assert (init["name"], init["image"]) == ("wait-modules", sts["spec"]["template"]["spec"]["containers"][0]["image"])
    assert "dpdk/igb_uio.ko: kernel/drivers/uio/uio.ko" in \
        (modules_dir(demo) / K416 / "modules.dep").read_text().splitlines()
    assert {(w.resource, w.name or (w.body or {}).get("metadata", {}).get("name")) for w in first.writes} >= {
        ("statefulsets", "cssr"), ("machineconfigs", "05-worker-kernelarg-hugepages"), ("configmaps",
                                                                                         "cssr-deploy-state")}

    smoke = first.results("smoke-test")
    assert (smoke["interfaces-up"], smoke["processes-running"]) == ("2", "17")
    assert demo.ssr is not None and demo.ssr.logins
    assert first.results("report")["recorded"] == "true"
    assert state(demo)["kernel-set-id"] == set_id and state(demo)["pipeline-run"] == "first"
    # provenance: Tekton Chains' type hints name the pushed image; the modules' full sha256 are in the state
    assert (first.outcome.results["IMAGE_URL"], first.outcome.results["IMAGE_DIGEST"]) == (
        image["IMAGE_URL"], image["IMAGE_DIGEST"]) == (image["image-url"], image["image-digest"])
    igb_uio = hashlib.sha256((modules_dir(demo) / K416 / "dpdk" / "igb_uio.ko").read_bytes()).hexdigest()
    assert json.loads(state(demo)["modules-sha256"])[K416]["igb_uio"] == igb_uio
    assert json.loads(first.outcome.results["kernel-modules"])[K416]["igb_uio"]["sha256"] == igb_uio[:16]
    assert "[report] PipelineRun first: Succeeded" in first.log


def test_a_second_run_builds_nothing_pushes_nothing_and_changes_nothing(demo, first):
    assert first.outcome.status == "Succeeded", first.log
    builds = demo.builds.read_text()
    sts = statefulset(demo)
    second = run(demo, "second")
    # Completed, as Tekton says of a run with a task skipped by its when guard; exit code 0
    assert (second.outcome.status, second.outcome.exit_code) == ("Completed", 0), second.log
    assert second.writes == []  # the TaskRuns and the PipelineRun are stored as Tekton would, not by the steps
    assert second.registry_writes == []
    digest = first.results("build-cssr-init")["image-digest"]
    assert second.results("check-cssr-init") == {"exists": "true", "image-url": first.results("check-cssr-init")[
        "image-url"], "image-digest": digest}
    build = second.outcome.task("build-cssr-init")
    assert (build.status, build.reason, build.attempts, build.results) == ("Skipped", "WhenExpressionsSkip", 0, {})
    assert second.statuses() == {"preflight": "Succeeded", "detect-kernel": "Succeeded",
                                 "check-cssr-init": "Succeeded", "build-cssr-init": "Skipped",
                                 "build-kmods": "Succeeded", "apply-manifests": "Succeeded",
                                 "smoke-test": "Succeeded", "report": "Succeeded", "prune": "Succeeded"}
    assert json.loads(second.results("build-kmods")["built-kernels"]) == []
    assert demo.builds.read_text() == builds
    assert second.outcome.results["init-image"] == first.outcome.results["init-image"]
    assert "IMAGE_URL" not in second.outcome.results  # no image built: nothing for Tekton Chains to attest
    assert second.outcome.results["statefulset-revision"] == first.outcome.results["statefulset-revision"]
    assert statefulset(demo)["spec"] == sts["spec"]
    assert re.search(r"\[report\] +build-cssr-init +Skipped +- +-", second.log), second.log
    assert "[report] PipelineRun second: Completed" in second.log
    assert "is already the last good one (recorded by first at" in second.log
    assert state(demo)["pipeline-run"] == "first"
    assert demo.sim is not None
    taskruns = [t for t in demo.sim.objects("tekton.dev/v1", "TaskRun", simdemo.NAMESPACE)
                if t["metadata"]["labels"]["tekton.dev/pipelineRun"] == "second"]
    assert sorted(t["metadata"]["labels"]["tekton.dev/pipelineTask"] for t in taskruns) == [
        "apply-manifests", "build-kmods", "check-cssr-init", "detect-kernel", "preflight", "prune", "report",
        "smoke-test"]
    run_object = demo.sim.get("tekton.dev/v1", "PipelineRun", "second", simdemo.NAMESPACE)
    assert run_object is not None
    assert run_object["status"]["skippedTasks"] == [{"name": "build-cssr-init", "reason": "WhenExpressionsSkip"}]


def test_a_kernel_added_to_one_node_builds_exactly_that_kernel(demo, first):
    assert first.outcome.status == "Succeeded", first.log
    demo.upgrade_node("worker-2", "4.17")
    set_id = kernels.kernel_set_id([K416, K417])
    third = run(demo, "third")
    assert third.outcome.status == "Succeeded", third.log
    assert json.loads(third.results("detect-kernel")["kernel-versions"]) == [K416, K417]
    assert third.results("check-cssr-init")["exists"] == "false"
    assert third.outcome.task("build-cssr-init").status == "Succeeded"
    image = third.results("build-cssr-init")
    assert (image["built"], image["image-url"]) == ("true", f"{demo.host}/cssr/cssr-init:{set_id}")
    assert third.outcome.results["init-image"] == image["image-url"]
    assert third.outcome.results["IMAGE_DIGEST"] == image["image-digest"]
    assert f"PUT /v2/cssr/cssr-init/manifests/{set_id}" in third.registry_writes
    assert json.loads(third.results("build-kmods")["built-kernels"]) == [K417]
    assert demo.builds.read_text().split() == [K416, K417]
    for kernel in (K416, K417):
        checks = verify_tree(modules_dir(demo), kernel, MODULES)
        assert all(c.ok for c in checks), [c.describe() for c in checks]
    # DESIGN.md decision 7: the new kernel's modules are on the volume before any reboot, and the router pods
    # do not restart for it: no new StatefulSet revision, no pod template naming the kernel set
    assert third.outcome.results["statefulset-revision"] == first.outcome.results["statefulset-revision"]
    template = statefulset(demo)["spec"]["template"]
    assert "cssr-init@" not in json.dumps(template) and image["image-digest"] not in json.dumps(template)
    dep = (modules_dir(demo) / K417 / "modules.dep").read_text().splitlines()
    assert any(line.startswith("dpdk/igb_uio.ko:") for line in dep)
    assert state(demo)["kernel-set-id"] == set_id and state(demo)["pipeline-run"] == "third"


def test_a_failing_task_skips_its_dependents_and_finally_reports_without_recording(demo, first):
    assert first.outcome.status == "Succeeded", first.log
    assert demo.sim is not None
    recorded = demo.sim.get("v1", "ConfigMap", "cssr-deploy-state", simdemo.NAMESPACE)
    assert recorded is not None
    demo.sim.fail("PATCH", f"/namespaces/{simdemo.NAMESPACE}/statefulsets/cssr", 403)  # RBAC lost its patch
    failed = run(demo, "broken")
    assert failed.outcome.status == "Failed"
    assert failed.outcome.exit_code == 1
    assert failed.statuses() == {"preflight": "Succeeded", "detect-kernel": "Succeeded",
                                 "check-cssr-init": "Succeeded", "build-cssr-init": "Skipped",
                                 "build-kmods": "Succeeded",
                                 "apply-manifests": "Failed", "smoke-test": "Skipped", "report": "Succeeded",
                                 "prune": "Skipped"}
    assert failed.outcome.task("smoke-test").reason == "PipelineRunStopping"
    assert "[report] PipelineRun broken: Failed (failed: apply-manifests" in failed.log
    assert failed.results("report")["recorded"] == "false"
    after = demo.sim.get("v1", "ConfigMap", "cssr-deploy-state", simdemo.NAMESPACE)
    assert after == recorded  # the last good kernel set is untouched
    assert "statefulset-revision" not in failed.outcome.results
    run_object = demo.sim.get("tekton.dev/v1", "PipelineRun", "broken", simdemo.NAMESPACE)
    assert run_object is not None and run_object["status"]["conditions"][0]["status"] == "False"


def test_a_misspelled_result_reference_fails_before_the_run_naming_the_line(demo, tmp_path):
    assert demo.sim is not None
    source = simdemo.REPO / "pipelines" / "cssr-deploy.yaml"
    lines = source.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "$(tasks.check-cssr-init.results.image-url)" in line)
    lines[index] = lines[index].replace("results.image-url", "results.image-ulr")
    typo = tmp_path / "pipelines" / "cssr-deploy.yaml"
    typo.parent.mkdir()
    typo.write_text("".join(lines))
    demo.sim.clear_requests()
    before = len(demo.registry_writes())
    with pytest.raises(ConfigError) as e:
        demo.run("typo", file=typo)
    message = str(e.value)
    assert f"{typo}:{index + 1}: $(tasks.check-cssr-init.results.image-ulr)" in message
    assert "declares no result image-ulr" in message
    assert demo.sim.requests == []  # not one step ran
    assert demo.registry_writes()[before:] == []
    assert demo.sim.get("tekton.dev/v1", "PipelineRun", "typo", simdemo.NAMESPACE) is None


def test_the_demo_command_is_green_with_every_stand_in(tmp_path):
    """`make demo` where buildah, the registry and the kernel headers are missing: stand-ins, said so, still green."""
    require_root()
    require_tool("openssl")
    out = io.StringIO()
    code = simdemo.main(["--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "work"),
                         "--without", "buildah", "--without", "registry", "--without", "headers"], out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "stand-in MiniRegistry of sim/mini_registry.py (--without registry)" in text
    assert "stand-in for buildah (cssr_tasks.sim.oci): building" in text  # the build step says what runs
    assert "stand-in builder: no kernel headers here; writing synthetic modules" in text
    assert "PipelineRun cssr-deploy-demo Succeeded" in text
    manifests = {p.name: yaml.safe_load(p.read_text()) for p in (tmp_path / "out" / "manifests").iterdir()}
    sts = next(m for m in manifests.values() if m["kind"] == "StatefulSet")
    assert sts["metadata"]["name"] == "cssr" and "status" not in sts
    assert any(m["kind"] == "ConfigMap" and m["metadata"]["name"] == "cssr-deploy-state" for m in manifests.values())
    assert (tmp_path / "out" / "results" / "kernel-set-id").read_text() == kernels.kernel_set_id([K416])
    modules = tmp_path / "work" / "volumes" / "modules" / "modules"
    assert all(c.ok for c in verify_tree(modules, K416, MODULES))
