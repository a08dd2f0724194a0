"""Stage C, the differential test (issue 17 point 4, issue 15 point 5): Tekton's own examples run
through the local executor (`cssr-tasks pipeline run`) and through the real Tekton of this cluster
give the same run status, the same status of each task (skipped ones with the same reason), the
same results of each task and the same results of each run.

The examples are those of the conformance test (tests/pipeline/tekton_examples.py: the pinned
tektoncd/pipeline module's examples/v1, read from the Go module cache) classed run-and-match in
tests/pipeline/tekton_examples.yaml whose steps need only a POSIX shell and busybox's applets.
The local side is that test's own wrapping (`run_example`), with one image mapping in place of its
per-image one, the same on both sides: every image of the example becomes Tekton's `shell` image of
this cluster (Debian's busybox-static, a link per applet in /bin, PATH=/bin: e2e/harness/images.py).
- on Tekton: every `image:` of the example's documents is rewritten to that image, by digest;
- locally: every image runs as the very same busybox binary with the very same /bin of links
  (`images.shell_rootfs`), PATH set to that folder only; a script runs by its shebang's
  interpreter from that /bin (Tekton puts `#!/bin/sh` before a script without one), a `/bin/x`
  command runs that folder's x, any other absolute path does not exist (exit 127), as in the image.
A step without command runs the image's entrypoint: the examples' busybox has Cmd `sh`, the
shell image Entrypoint `/bin/sh`, so both sides run `sh` with the step's args.

Each example runs in a namespace of its own; all run at once, each with its own timeout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.harness import images, registry, world_c
from e2e.harness.layout import Layout

from cssr_tasks.cluster import Cluster
from pipeline.tekton_examples import Observed, module_dir, run_example

from conftest import ROOT, wait_for

# run-and-match examples whose steps need only sh and busybox applets (those of an Ubuntu image too,
# when its scripts use nothing else); together they cover string and array params (defaults,
# propagation, a stepTemplate image from a param), results (passed between tasks, in when-guards,
# pipeline results), when-guards that skip tasks and finally tasks ($(tasks.status), a task's
# status, array params), finally, workspaces (optional emptyDir, volumeClaimTemplate, a claim bound
# twice, once readOnly), onError: continue (also from a param) after failing steps, and Tekton's
# entrypoint lookup of a step without command.
EXAMPLES = [
    "pipelineruns/6139-regression.yaml",
    "pipelineruns/ignore-step-error.yaml",
    "pipelineruns/pipelinerun-results-with-params.yaml",
    "pipelineruns/pipelinerun-results.yaml",
    "pipelineruns/pipelinerun-task-execution-status.yaml",
    "pipelineruns/pipelinerun-with-pipelinespec.yaml",
    "pipelineruns/pipelinerun-with-when-expressions.yaml",
    "pipelineruns/propagating_results_implicit_resultref.yaml",
    "taskruns/5080-entrypoint-init-regression.yaml",
    "taskruns/default_task_params.yaml",
    "taskruns/ignore-step-error.yaml",
    "taskruns/optional-workspaces.yaml",
    "taskruns/step-by-digest.yaml",
    "taskruns/steps-run-in-order.yaml",
    "taskruns/steptemplate-variable-interop.yaml",
    "taskruns/workspace-readonly.yaml",
]
# run-and-match examples whose images the conformance test maps to busybox, left out here, and why.
EXCLUDED = {
    "pipelineruns/using-optional-workspaces-in-when-expressions.yaml":
        "`#!/usr/bin/env ash`: the shell image has no /usr/bin/env (Alpine has)",
    "pipelineruns/optional-workspaces.yaml": "`#!/usr/bin/env sh`: the shell image has no /usr/bin/env",
    "pipelineruns/beta/using-retries-and-retry-count-variables.yaml":
        "`#!/usr/bin/env sh`: the shell image has no /usr/bin/env",
    "pipelineruns/alpha/param-enum.yaml": "param enum needs the feature flag enable-param-enum, off by default",
    "taskruns/alpha/param-enum.yaml": "param enum needs the feature flag enable-param-enum, off by default",
    "pipelineruns/beta/propagated-pipeline-object-param.yaml":
        "no command: runs the bash image's entrypoint (docker-entrypoint.sh), not sh",
    "taskruns/beta/propagated-object-parameters.yaml":
        "no command: runs the bash image's entrypoint (docker-entrypoint.sh), not sh",
    "taskruns/array-default.yaml": "no command: runs the bash image's entrypoint (docker-entrypoint.sh), not sh",
}
RUN_TIMEOUT = 240.0  # each run, from its creation; the examples take seconds
SHELL_REPOSITORY = f"{images.TEKTON_REPOSITORY}/shell"
KEEP = bool(os.environ.get("E2E_KEEP"))
SESSION = str(int(time.time()))

# Locally: $1 is a script file the executor wrote (run by its shebang), a /bin command, or a name.
DISPATCH = r'''bin="$1"; shift
case "$1" in
  /bin/*) c="$bin/${1#/bin/}"; shift; set -- "$c" "$@";;
  /*) if [ -f "$1" ] && [ "$(head -c2 "$1")" = "#!" ]; then
        read -r first < "$1"; set -- ${first#\#!} "$@"
        case "$1" in /bin/*) c="$bin/${1#/bin/}"; shift; set -- "$c" "$@";; esac
      fi;;
esac
case "$1" in "$bin"/*) ;; /*) echo "$1: no such file in the shell image" >&2; exit 127;; esac
exec "$@"'''


def shell_bin(tmp: Path) -> Path:
    """The shell image's /bin, made as its build makes it: the same busybox-static, a link per applet."""
    return images.shell_rootfs(images.busybox_static(Layout()), tmp / "shell-rootfs") / "bin"


def local_command(bin_dir: Path) -> str:
    busybox = bin_dir / "busybox"
    return shlex.join([str(busybox), "env", f"PATH={bin_dir}", str(busybox), "sh", "-c", DISPATCH,
                       "shell-image", str(bin_dir)])


def shell_ref() -> str:
    tag = images.tekton_version()
    found = registry.manifest(SHELL_REPOSITORY, tag)
    assert found, f"the registry has no {SHELL_REPOSITORY}:{tag}; run `python -m e2e.harness up`"
    return f"{world_c.POD_REGISTRY}/{SHELL_REPOSITORY}:{tag}@{found[0]}"


def rewrite_images(value: Any, image: str) -> Any:
    """The documents with every `image:` (steps, stepTemplate, sidecars) set to `image`."""
    if isinstance(value, list):
        return [rewrite_images(v, image) for v in value]
    if isinstance(value, dict):
        return {k: image if k == "image" and isinstance(v, str) else rewrite_images(v, image) for k, v in value.items()}
    return value


def skip_reasons() -> dict[str, str]:
    """Tekton's SkippingReason constants (pkg/apis/pipeline/v1/pipelinerun_types.go of the pinned module):
    the executor reports the constant's name, Tekton's status its text."""
    source = (module_dir() / "pkg/apis/pipeline/v1/pipelinerun_types.go").read_text()
    found = dict(re.findall(r'^\s*(\w+) SkippingReason = "([^"]*)"', source, re.M))
    assert "WhenExpressionsSkip" in found, "no SkippingReason constants in the pinned module: review skip_reasons"
    return found


def run_key(doc: dict[str, Any]) -> str:
    """The name the conformance wrapper gives a TaskRun's one task (its name or generateName)."""
    meta = doc.get("metadata") or {}
    return str(meta.get("name") or meta.get("generateName") or "run").rstrip("-")


@dataclass
class Seen:
    """What one side saw of one example, in the conformance test's keys ("<index>/<task>" for files of
    several runs)."""

    status: list[str] = field(default_factory=list)
    tasks: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_results: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def from_local(observed: Observed, reasons: dict[str, str]) -> Seen:
    assert observed.kind == "run", f"the executor did not run it: {observed.kind} {observed.problems}"
    tasks = {}
    for key, shown in observed.tasks.items():
        status, _, reason = shown.partition("/")
        tasks[key] = f"Skipped/{reasons.get(reason, reason)}" if status == "Skipped" else status
    return Seen(observed.status.split(","), tasks, observed.results, observed.run_results)


# -- the real side -----------------------------------------------------------------------------


@dataclass
class Started:
    example: str
    namespace: str
    runs: list[tuple[str, str, str]]  # (kind, name, key of its one task for a TaskRun)
    began: float
    pvs: list[str] = field(default_factory=list)


def claim_volumes(admin: Cluster, namespace: str, docs: list[dict[str, Any]]) -> list[str]:
    """A class-less hostPath PV per volumeClaimTemplate, and one bound to each claim of the example (no
    provisioner runs here; world_c's way)."""
    volumes = []
    for index, doc in enumerate(docs):
        if doc.get("kind") == "PersistentVolumeClaim":
            pv = world_c.scratch_volume(namespace, f"{index}-claim")
            pv["spec"]["capacity"] = doc["spec"]["resources"]["requests"]
            pv["spec"]["claimRef"] = {"namespace": namespace, "name": doc["metadata"]["name"]}
            volumes.append(pv)
        for binding in (doc.get("spec") or {}).get("workspaces") or [] if doc.get("kind") == "PipelineRun" else []:
            if "volumeClaimTemplate" in binding:
                volumes.append(world_c.scratch_volume(namespace, f"{index}-{binding['name']}"))
    for pv in volumes:
        admin.apply(pv, field_manager="e2e-differential")
    return [pv["metadata"]["name"] for pv in volumes]


def start(admin: Cluster, kubectl: Any, example: str, image: str) -> Started:
    docs = [d for d in yaml.safe_load_all((module_dir() / "examples/v1" / example).read_text()) if d]
    slug = re.sub(r"[^a-z0-9]+", "-", example.lower().removesuffix(".yaml"))[:40].strip("-")
    namespace = f"diff-{SESSION}-{slug}"
    kubectl("create", "namespace", namespace)
    wait_for(f"ServiceAccount default in {namespace}", lambda: any(
        a["metadata"]["name"] == "default" for a in admin.list("v1", "serviceaccounts", namespace=namespace)), 30)
    pvs = claim_volumes(admin, namespace, docs)
    rewritten = rewrite_images(docs, image)
    created = kubectl("create", "-n", namespace, "-o", "name", "-f", "-", stdin=yaml.safe_dump_all(rewritten))
    names = created.stdout.split()
    assert len(names) == len(docs), f"{example}: kubectl created {names} of {len(docs)} documents"
    runs = [(str(doc["kind"]), ref.split("/", 1)[1], run_key(doc)) for doc, ref in zip(docs, names, strict=True)
            if doc["kind"] in ("PipelineRun", "TaskRun")]
    return Started(example, namespace, runs, time.monotonic(), pvs)



def condition(obj: dict[str, Any]) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Succeeded"), {})


def read(admin: Cluster, started: Started, reasons: dict[str, str]) -> Seen:
    seen = Seen()
    for index, (kind, name, key) in enumerate(started.runs):
        prefix = f"{index}/" if len(started.runs) > 1 else ""
        plural = "pipelineruns" if kind == "PipelineRun" else "taskruns"
        run = admin.get("tekton.dev/v1", plural, name, started.namespace)
        seen.status.append(str(condition(run).get("reason")))
        status = run.get("status") or {}
        if kind == "TaskRun":
            children = {key: run}
            seen.run_results.append({})
        else:
            children = {c["pipelineTaskName"]: admin.get("tekton.dev/v1", "taskruns", c["name"], started.namespace)
                        for c in status.get("childReferences") or [] if c.get("kind") == "TaskRun"}
            seen.run_results.append({r["name"]: r["value"] for r in status.get("results") or []})
            for skipped in status.get("skippedTasks") or []:
                seen.tasks[prefix + skipped["name"]] = f"Skipped/{skipped['reason']}"
                seen.results[prefix + skipped["name"]] = {}
        for task, taskrun in children.items():
            state = condition(taskrun).get("status")
            seen.tasks[prefix + task] = {"True": "Succeeded", "False": "Failed"}.get(str(state), f"Unknown/{state}")
            seen.results[prefix + task] = {r["name"]: r["value"]
                                           for r in (taskrun.get("status") or {}).get("results") or []}
    return seen


def done(admin: Cluster, started: Started) -> bool:
    for kind, name, _ in started.runs:
        run = admin.get("tekton.dev/v1", "pipelineruns" if kind == "PipelineRun" else "taskruns", name,
                        started.namespace)
        if condition(run).get("status") in (None, "Unknown"):
            assert time.monotonic() - started.began < RUN_TIMEOUT, \
                f"{started.example}: {kind} {started.namespace}/{name} not finished after {RUN_TIMEOUT:.0f} s"
            return False
    return True


@pytest.fixture(scope="module")
def tekton(layout: Layout, admin: Cluster, kubectl: Any) -> Iterator[dict[str, Seen | str]]:
    """Every example on the real Tekton at once; per example what Tekton reported, or why it did not."""
    image = shell_ref()
    reasons = skip_reasons()
    began = time.monotonic()
    started = {example: start(admin, kubectl, example, image) for example in EXAMPLES}
    seen: dict[str, Seen | str] = {}
    try:
        pending = dict(started)
        while pending:
            for example, s in list(pending.items()):
                try:
                    if done(admin, s):
                        seen[example] = read(admin, s, reasons)
                        seen[example].seconds = time.monotonic() - s.began
                        del pending[example]
                except AssertionError as e:
                    seen[example] = str(e)
                    del pending[example]
            time.sleep(1)
        print(f"\n{len(EXAMPLES)} examples on Tekton, all at once: {time.monotonic() - began:.1f} s; "
              + ", ".join(f"{Path(k).name} {v.seconds:.0f} s" for k, v in seen.items() if isinstance(v, Seen)))
        yield seen
    finally:
        if not KEEP:
            for s in started.values():
                kubectl("delete", "namespace", s.namespace, "--wait=false", check=False)
                for pv in s.pvs:
                    kubectl("delete", "persistentvolume", pv, "--wait=false", check=False)
                for folder in world_c.PV_ROOT.glob(f"{s.namespace}-*"):
                    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Seen]:
    """Every example through the local executor, its images mapped to the shell image's busybox."""
    command = local_command(shell_bin(tmp_path_factory.mktemp("shell")))
    reasons = skip_reasons()
    root = module_dir()
    seen = {}
    for example in EXAMPLES:
        began = time.monotonic()
        seen[example] = from_local(run_example(root, example, lambda _image: command), reasons)
        seen[example].seconds = time.monotonic() - began
    return seen


def same_value(local: str | Any, tekton: Any) -> bool:
    """A result as the executor holds it (the file's text) against Tekton's (an array or object result
    is parsed JSON there)."""
    if isinstance(tekton, str) or not isinstance(local, str):
        return bool(local == tekton)
    try:
        return bool(json.loads(local) == tekton)
    except ValueError:
        return False


def differences(example: str, mine: Seen, theirs: Seen) -> list[str]:
    found = []
    if mine.status != theirs.status:
        found.append(f"{example}: run status: local {mine.status}, Tekton {theirs.status}")
    for task in sorted(set(mine.tasks) | set(theirs.tasks)):
        a, b = mine.tasks.get(task, "absent"), theirs.tasks.get(task, "absent")
        if a != b:
            found.append(f"{example}: task {task}: status: local {a}, Tekton {b}")
        ra, rb = mine.results.get(task, {}), theirs.results.get(task, {})
        for name in sorted(set(ra) | set(rb)):
            if name not in ra or name not in rb or not same_value(ra[name], rb[name]):
                found.append(f"{example}: task {task}: result {name}: local {ra.get(name, 'absent')!r}, "
                             f"Tekton {rb.get(name, 'absent')!r}")
    for index, (ra, rb) in enumerate(zip(mine.run_results, theirs.run_results, strict=True)):
        for name in sorted(set(ra) | set(rb)):
            if name not in ra or name not in rb or not same_value(ra[name], rb[name]):
                found.append(f"{example}: run {index}: result {name}: local {ra.get(name, 'absent')!r}, "
                             f"Tekton {rb.get(name, 'absent')!r}")
    return found


def test_the_selection_is_run_and_match_and_named():
    """Every example compared or left out is one the conformance test runs and matches, each named once."""
    expected = yaml.safe_load((ROOT / "tests/pipeline/tekton_examples.yaml").read_text())
    for example in [*EXAMPLES, *EXCLUDED]:
        assert expected[example]["class"] == "run-and-match", f"{example} is {expected[example]['class']} now"
    assert not set(EXAMPLES) & set(EXCLUDED) and len(EXAMPLES) == len(set(EXAMPLES)) >= 10


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_executor_and_tekton_agree(example: str, local: dict[str, Seen], tekton: dict[str, Seen | str]):
    theirs = tekton[example]
    assert isinstance(theirs, Seen), theirs
    mine = local[example]
    assert mine.tasks, f"{example}: the executor ran no task"
    found = differences(example, mine, theirs)
    assert not found, "the local executor and Tekton differ:\n" + "\n".join(found)


def test_the_local_image_is_the_shell_images_busybox(tmp_path: Path):
    """The local stand-in for every image runs what the shell image holds, nothing of this machine's."""
    import subprocess

    bin_dir = shell_bin(tmp_path)
    command = shlex.split(local_command(bin_dir))
    script = tmp_path / "step.sh"
    script.write_text('#!/bin/sh\nset -e\nreadlink /proc/$$/exe; which cat; echo "$PATH"\n')

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *argv], capture_output=True, text=True, check=False, timeout=30)

    assert run(str(script)).stdout.split() == [str(bin_dir / "busybox"), str(bin_dir / "cat"), str(bin_dir)]
    assert run("/bin/sh", "-c", "readlink /proc/$$/exe").stdout.strip() == str(bin_dir / "busybox")
    missing = run("/usr/bin/env", "true")  # Alpine has it, the shell image not
    assert missing.returncode == 127 and "no such file in the shell image" in missing.stderr
    bash = tmp_path / "bash.sh"
    bash.write_text("#!/bin/bash\necho no\n")
    assert run(str(bash)).returncode == 127


def test_a_difference_names_the_example_the_task_and_both_values():
    mine = Seen(["Completed"], {"a": "Succeeded", "b": "Skipped/When Expressions evaluated to false"},
                {"a": {"r": "1001\n", "list": '["x", "y"]'}, "b": {}}, [{"out": "1"}])
    assert differences("ex.yaml", mine, mine) == []
    theirs = Seen(["Completed"], {"a": "Succeeded", "b": "Skipped/Results were missing"},
                  {"a": {"r": "1001", "list": ["x", "y"]}, "b": {}}, [{"out": "1", "more": "2"}])
    assert differences("ex.yaml", mine, theirs) == [
        "ex.yaml: task a: result r: local '1001\\n', Tekton '1001'",
        "ex.yaml: task b: status: local Skipped/When Expressions evaluated to false, "
        "Tekton Skipped/Results were missing",
        "ex.yaml: run 0: result more: local 'absent', Tekton '2'"]
