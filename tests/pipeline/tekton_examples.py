"""Tekton's own examples (tektoncd/pipeline, examples/v1) run through the local executor.

The examples are data, fetched at the version crds/go.mod pins (its zip checked by crds/go.sum)
with `go mod download`: nothing of them is copied into this repository. Each PipelineRun or
TaskRun becomes what the executor runs:
- a PipelineRun: its Pipeline (pipelineRef to a Pipeline of the same file, or pipelineSpec),
  its params as --param (a param only an embedded pipelineSpec uses is declared on the wrapper,
  as Tekton propagates it), its workspaces as folders;
- a TaskRun: a Pipeline of one task holding the TaskRun's taskRef or taskSpec, params,
  workspaces and timeout.
Every image runs as a local shell (`--image-command IMAGE=...`): a command runs from PATH, a
script by its shebang (Tekton's `#!/bin/sh` + `set -e` when it has none). The images' own /bin/sh
differs: busybox ash in the busybox and Alpine-based images (alpine, bash, docker, node:*-alpine),
dash in the Debian and Ubuntu ones, as on this machine. So a busybox image's `sh`, `ash`, and
scripts starting `#!/bin/sh`, `#!/usr/bin/env sh` or `ash` run with the real `busybox sh`.
A step without command or script runs the image's own entrypoint, which Tekton reads from the
registry (pkg/pod/entrypoint_lookup_impl.go imageInfo: the config's Entrypoint, else its Cmd) and
sets as the step's command: ENTRYPOINTS does that lookup for the images whose config is known; a
step of any other image is not runnable here.
ConfigMaps and Secrets of the same file are the cluster that env valueFrom, envFrom and volumes read.

The values parsed keep their lines, so a refusal names the example's file and line.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cssr_tasks.errors import ConfigError
from cssr_tasks.tekton.model import Map, load_documents
from cssr_tasks.tekton.run import Executor, Options
from cssr_tasks.tekton.steps import repository
from cssr_tasks.tekton.unsupported import named_features

ROOT = Path(__file__).resolve().parents[2]
MODULE = "github.com/tektoncd/pipeline"
FOLDERS = ("examples/v1/pipelineruns", "examples/v1/taskruns")
# The image as a local command: what it gets is a script file, or a command, then the args.
LOCAL = "env"
BUSYBOX_SH = ("sh -c 'case \"$1\" in sh|ash|/bin/sh|/bin/ash) shift; exec busybox sh \"$@\";; esac; "
              "if [ -f \"$1\" ]; then case \"$(head -n1 \"$1\")\" in \"#!/bin/sh\"|\"#!/bin/ash\"|"
              "\"#!/usr/bin/env sh\"|\"#!/usr/bin/env ash\") exec busybox sh \"$@\";; esac; fi; "
              "exec \"$@\"' busybox-image")
# images whose /bin/sh is busybox ash: busybox, Alpine, and the official images built on Alpine
# (bash, docker: their Dockerfiles start FROM alpine)
_BUSYBOX_NAMES = ("busybox", "alpine", "bash", "docker", "alpine-git-nonroot")
# The command Tekton's entrypoint lookup gives a step without command, when it has args, per image:
# busybox's config has no Entrypoint and Cmd ["sh"] (docker-library/busybox), ubuntu's Cmd ["/bin/bash"]
# (docker-library/ubuntu), bash's Entrypoint docker-entrypoint.sh (tianon/docker-bash): bash for no args
# or an option first, else the args as a command.
ENTRYPOINTS = {
    "busybox": ["sh"],
    "ubuntu": ["/bin/bash"],
    "bash": ["sh", "-c", 'if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then exec bash "$@"; fi; exec "$@"',
             "docker-entrypoint.sh"],
}
# Not runnable here, for a reason the example itself shows (evidence: text it must hold).
# expect: None, it is not run; else a text its run's log must hold (it runs, and fails for that reason).
NOT_HERE: dict[str, tuple[str, str, str | None]] = {
    "pipelineruns/pipelinerun.yaml": (
        "https://github.com/GoogleContainerTools/skaffold", "clones from GitHub and pushes to gcr.io: needs the "
        "network and a registry", None),
    "pipelineruns/pipelinerun-with-final-tasks.yaml": (
        "https://github.com/tektoncd/community.git", "clones from GitHub: needs the network", None),
    "taskruns/no-ci/default-workspaces.yaml": (
        "Uses default workspace specified in config-defaults", "binds no workspace: it relies on the cluster's "
        "config-defaults default-task-run-workspace-binding (no-ci: Tekton's CI does not run it either)", None),
    # Tekton's CI runs the beta and alpha examples with results-from: sidecar-logs (test/e2e-tests-kind-beta.env,
    # -alpha.env); with the default termination-message, which the executor applies, Tekton fails them too.
    "taskruns/beta/large-task-result.yaml": (
        "creates results > termination message limit", "needs feature flag results-from: sidecar-logs; under the "
        "default (termination messages) its results do not fit, on Tekton as here", "termination message"),
    "pipelineruns/alpha/pipelinerun-large-results.yaml": (
        "head -c 2500", "needs feature flag results-from: sidecar-logs; under the default (termination messages) "
        "its results do not fit, on Tekton as here", "termination message"),
}


def module_version() -> str:
    """The pinned version of the Tekton module, as crds/go.mod requires it."""
    found = re.search(rf"^\s*{re.escape(MODULE)}\s+(\S+)", (ROOT / "crds/go.mod").read_text(), re.M)
    assert found, f"crds/go.mod does not require {MODULE}"
    return found.group(1)


def module_dir() -> Path:
    """The module's folder, by `go mod download` (the checksum of crds/go.sum is verified; offline from cache)."""
    if shutil.which("go") is None:
        raise RuntimeError("go is not installed; `make deps` installs it (the examples come from the Go module)")
    done = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{module_version()}"], cwd=ROOT / "crds",
                          capture_output=True, text=True, timeout=600, check=False)
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {MODULE} failed: {info.get('Error') or done.stderr.strip()}")
    return Path(info["Dir"])


def require_busybox() -> None:
    if shutil.which("busybox") is None:
        raise RuntimeError("busybox is not installed; `make deps` installs it (the busybox and Alpine images' sh)")


def example_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root / "examples/v1")) for folder in FOLDERS
                  for p in (root / folder).rglob("*.yaml"))


@dataclass
class Observed:
    """What happened to one example: its class, and the evidence."""

    kind: str  # run | refused | accepted | wrapper-refused
    status: str = ""  # the run's status; for several runs in a file, each joined by ","
    tasks: dict[str, str] = field(default_factory=dict)  # "<run>/<task>" or "<task>" -> status[/reason]
    results: dict[str, dict[str, str]] = field(default_factory=dict)  # same keys -> the task's results
    run_results: list[dict[str, Any]] = field(default_factory=list)  # per run: the Pipeline's results
    features: list[str] = field(default_factory=list)  # refused: the features the problems name
    problems: list[str] = field(default_factory=list)
    log: str = ""


# -- wrapping -------------------------------------------------------------------------------


def _named(docs: list[Map], kind: str, name: str) -> Map | None:
    return next((d for d in docs if d.get("kind") == kind and (d.get("metadata") or {}).get("name") == name), None)


def _data(doc: Map) -> dict[str, str]:
    values = {str(k): base64.b64decode(str(v)).decode("utf-8", "replace")
              for k, v in (doc.get("data") or {}).items()} if doc.get("kind") == "Secret" else {
        str(k): str(v) for k, v in (doc.get("data") or {}).items()}
    values.update({str(k): str(v) for k, v in (doc.get("stringData") or {}).items()})
    return values


def _fill(folder: Path, data: dict[str, str], items: Any) -> None:
    wanted = {str(i["key"]): str(i.get("path") or i["key"]) for i in items or []}
    for key, value in data.items():
        if wanted and key not in wanted:
            continue
        target = folder / wanted.get(key, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value)


class NotWrappable(Exception):
    """A run-level field the local executor has no equivalent for (the executor runs Pipelines)."""


def _workspace(binding: Map, docs: list[Map], root: Path, claims: dict[str, Path]) -> Path:
    name = str(binding["name"])
    if "persistentVolumeClaim" in binding:  # one claim, one folder, whoever binds it
        claim = str(binding["persistentVolumeClaim"].get("claimName"))
        folder = claims.setdefault(claim, root / "claims" / claim)
    else:
        folder = root / "workspaces" / name
    folder.mkdir(parents=True, exist_ok=True)
    sources: list[tuple[str, Any]] = []
    if "configMap" in binding or "secret" in binding:
        sources.append(("configMap" if "configMap" in binding else "secret",
                        binding.get("configMap") or binding.get("secret")))
    elif "projected" in binding:
        sources += [(k, v) for s in binding["projected"].get("sources") or [] for k, v in s.items()]
    elif "csi" in binding:
        raise NotWrappable(f"workspace {name} is a CSI volume (a secret store driver), which this machine lacks")
    elif not ({"emptyDir", "volumeClaimTemplate", "persistentVolumeClaim"} & set(binding)):
        raise NotWrappable(f"workspace {name} binds {sorted(set(binding) - {'name'})}, which has no local folder")
    for kind, spec in sources:
        ref = str(spec.get("name") or spec.get("secretName"))
        doc = _named(docs, "ConfigMap" if kind == "configMap" else "Secret", ref)
        if doc is None:
            raise NotWrappable(f"workspace {name} needs {kind} {ref}, which the example does not hold")
        _fill(folder / binding.get("subPath", ""), _data(doc), spec.get("items"))
    return folder


_RUN_FIELDS = {"PipelineRun": {"pipelineRef", "pipelineSpec", "params", "workspaces", "taskRunTemplate", "status"},
               "TaskRun": {"taskRef", "taskSpec", "params", "workspaces", "serviceAccountName", "timeout"}}


def _check_run_fields(run: Map) -> None:
    spec = run.get("spec") or {}
    extra = sorted(set(spec) - _RUN_FIELDS[str(run["kind"])])
    if extra:
        raise NotWrappable(f"{run['kind']} field(s) {', '.join(extra)} set what a Pipeline cannot say")
    template = spec.get("taskRunTemplate") or {}
    if set(template) - {"serviceAccountName"}:
        raise NotWrappable(f"taskRunTemplate {sorted(set(template) - {'serviceAccountName'})} is pod-level")
    account = template.get("serviceAccountName") or spec.get("serviceAccountName")
    if account and account != "default":  # Tekton's creds-init turns the account's Secrets into ~/.gitconfig, ~/.docker: a cluster thing
        raise NotWrappable(f"serviceAccountName {account}: its credentials reach steps through Tekton's creds-init")


def wrap(run: Map, docs: list[Map], root: Path) -> tuple[list[Map], dict[str, str], dict[str, Path]]:
    """The documents, params and workspace folders of the Pipeline that runs `run`."""
    _check_run_fields(run)
    spec = run.get("spec") or Map()
    name = str((run.get("metadata") or {}).get("name") or (run.get("metadata") or {}).get("generateName") or "run")
    name = name.rstrip("-")
    values = {str(p["name"]): p.get("value") for p in spec.get("params") or []}
    claims: dict[str, Path] = {}
    folders = {str(b["name"]): _workspace(b, docs, root, claims) for b in spec.get("workspaces") or []}
    tasks = [d for d in docs if d.get("kind") == "Task"]
    if run["kind"] == "TaskRun":
        entry = Map({"name": name, "params": [Map({"name": k, "value": v}) for k, v in values.items()],
                     "workspaces": [Map({"name": w, "workspace": w}) for w in folders]})
        for key in ("taskRef", "taskSpec", "timeout"):
            if key in spec:
                entry[key] = spec[key]
        if str((spec.get("taskRef") or {}).get("kind", "Task")).lower() == "task":  # a TaskRun runs only Tasks
            entry["taskRef"] = Map({k: v for k, v in spec["taskRef"].items() if k != "kind"}) \
                if "taskRef" in spec else None
            if entry["taskRef"] is None:
                del entry["taskRef"]
            else:
                entry["taskRef"].line = spec["taskRef"].line  # a refusal names the TaskRun's line
        entry.line = spec.line
        pipeline_spec = Map({"tasks": [entry], "workspaces": [Map({"name": w}) for w in folders],
                             "params": []})
        embedded = True
    elif "pipelineSpec" in spec:
        pipeline_spec = Map(spec["pipelineSpec"])
        pipeline_spec.line = spec["pipelineSpec"].line
        embedded = True
    else:
        ref = spec.get("pipelineRef") or {}
        if not ref.get("name"):
            pipeline_spec = Map({"tasks": [Map({"name": "pipeline", "pipelineRef": ref})]})
            pipeline_spec.line = line = getattr(ref, "line", 0)
            pipeline_spec["tasks"][0].line = line
            embedded = False
            # what the run binds, declared: the remote Pipeline's own declarations are not at hand
            pipeline_spec["workspaces"] = [Map({"name": w}) for w in folders]
        else:
            found = _named(docs, "Pipeline", str(ref["name"]))
            if found is None:
                raise NotWrappable(f"pipelineRef {ref['name']} is not in the example")
            pipeline_spec, embedded = found.get("spec") or Map(), False
    declared_workspaces = {str(w.get("name")) for w in pipeline_spec.get("workspaces") or []}
    if run["kind"] == "PipelineRun" and embedded and set(folders) - declared_workspaces:
        # Tekton propagates a PipelineRun's workspaces into an embedded pipelineSpec that does not declare them
        line = pipeline_spec.line
        pipeline_spec = Map({**pipeline_spec, "workspaces": [*(pipeline_spec.get("workspaces") or []), *(
            Map({"name": w}) for w in folders if w not in declared_workspaces)]})
        pipeline_spec.line = line
    declared = {str(p.get("name")) for p in pipeline_spec.get("params") or []}
    params: dict[str, str] = {}
    for key, value in values.items():
        if run["kind"] == "TaskRun":
            continue  # they are the task's params above
        if key not in declared:
            if not embedded:
                continue  # Tekton ignores a PipelineRun's params its referenced Pipeline does not declare
            extra = Map({"name": key, "type": "array" if isinstance(value, list) else
                         "object" if isinstance(value, dict) else "string"})
            pipeline_spec = Map({**pipeline_spec, "params": [*(pipeline_spec.get("params") or []), extra]})
        params[key] = value if isinstance(value, str) else json.dumps(value)
    pipeline = Map({"apiVersion": "tekton.dev/v1", "kind": "Pipeline", "metadata": {"name": name},
                    "spec": pipeline_spec})
    pipeline.line = run.line
    return [pipeline, *tasks], params, folders


def images(value: Any, values: dict[str, set[str]] | None = None) -> Iterator[str]:
    """Every `image:` of the documents (steps, stepTemplates, sidecars); `$(params.x)` as x's values."""
    values = _param_values(value) if values is None else values
    if isinstance(value, list):
        for item in value:
            yield from images(item, values)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "image" and isinstance(item, str):
                named = re.fullmatch(r"\$\(params\.([\w-]+)\)", item.strip())
                yield from sorted(values.get(named.group(1), ())) if named else [item.strip()]
            else:
                yield from images(item, values)


def _param_values(value: Any) -> dict[str, set[str]]:
    """name -> the string values and defaults given to params of that name, anywhere in the documents."""
    found: dict[str, set[str]] = {}
    if isinstance(value, list):
        for item in value:
            for k, v in _param_values(item).items():
                found.setdefault(k, set()).update(v)
    elif isinstance(value, dict):
        for key in ("value", "default"):
            if isinstance(value.get("name"), str) and isinstance(value.get(key), str):
                found.setdefault(value["name"], set()).add(value[key])
        for item in value.values():
            for k, v in _param_values(item).items():
                found.setdefault(k, set()).update(v)
    return found


def local_command(image: str) -> str:
    name = repository(image).rsplit("/", 1)[-1]
    tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    busybox = name in _BUSYBOX_NAMES or "/alpine/" in image or "alpine" in tag
    return BUSYBOX_SH if busybox else LOCAL


def entrypoint_steps(value: Any) -> Iterator[str]:
    """Steps that run their image's own entrypoint, unresolved: no command, no script (and no StepAction
    ref). Those of an image in ENTRYPOINTS get its command here, as Tekton's lookup gives it, when they
    have args (without args Tekton also appends the image's Cmd: not in the table)."""
    if isinstance(value, list):
        for item in value:
            yield from entrypoint_steps(item)
    elif isinstance(value, dict):
        template = value.get("stepTemplate") or {}
        for index, step in enumerate(value.get("steps") or []):
            if isinstance(step, dict) and not ({"command", "script", "ref"} & (set(step) | set(template))):
                image = str(step.get("image") or template.get("image") or "")
                known = ENTRYPOINTS.get(repository(image).rsplit("/", 1)[-1])
                if known and (step.get("args") or template.get("args")) and "$(" not in image:
                    step["command"] = list(known)
                    continue
                yield f"step {step.get('name') or index} (image {image})"
        for key, item in value.items():
            if key != "steps":
                yield from entrypoint_steps(item)


def run_example(root: Path, relative: str, local: Callable[[str], str] = local_command) -> Observed:
    """`local` gives the local command that stands for an image (the differential test of e2e/ maps
    every image to the e2e cluster's shell image's own busybox)."""
    require_busybox()
    path = root / "examples/v1" / relative
    docs = load_documents(path)
    runs = [d for d in docs if d.get("kind") in ("PipelineRun", "TaskRun")]
    store = {(str(d["kind"]), str((d.get("metadata") or {}).get("name"))): _data(d)
             for d in docs if d.get("kind") in ("Secret", "ConfigMap")}
    if relative in NOT_HERE:
        evidence, reason, expect = NOT_HERE[relative]
        assert evidence in path.read_text(), f"{relative} no longer holds {evidence!r}: review NOT_HERE"
        if expect is None:
            return Observed("not-runnable", problems=[reason])
    commands = {image: local(image) for image in images(docs)}
    observed = Observed("run")
    statuses: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tekton-example-") as tmp:
        for index, run in enumerate(runs):
            folder = Path(tmp) / str(index)
            try:
                documents, params, workspaces = wrap(run, docs, folder)
            except NotWrappable as e:
                return Observed("wrapper-refused", problems=[str(e)])
            out = io.StringIO()
            options = Options(file=path, params=params, workspaces=workspaces, image_commands=commands,
                              run_dir=folder / "run", environ=_environ(), documents=documents,
                              namespace="default")
            own = list(entrypoint_steps(documents))  # the lookup fills in the known ones, lists the rest
            try:
                executor = Executor(options, out=out, read_data=lambda k, n, _ns: store.get((k, n)))
            except ConfigError as e:  # a refusal comes first: it holds for any image
                problems = [line.strip()[2:] for line in str(e).splitlines()[1:]] or [str(e)]
                return Observed("refused", features=named_features(str(e)), problems=problems)
            if own:
                return Observed("not-runnable", problems=[
                    f"{', '.join(own)} run(s) the image's own entrypoint, which Tekton looks up in the registry; "
                    "no local command stands for it"])
            outcome = executor.execute()
            statuses.append(outcome.status)
            prefix = f"{index}/" if len(runs) > 1 else ""
            for state in outcome.tasks:
                shown = state.status if state.status == "Succeeded" else f"{state.status}/{state.reason}"
                observed.tasks[prefix + state.name] = shown
                observed.results[prefix + state.name] = dict(state.results)
            observed.run_results.append(dict(outcome.results))
            observed.log += out.getvalue()
    observed.status = ",".join(statuses)
    if relative in NOT_HERE:
        expect = NOT_HERE[relative][2]
        assert expect and expect in observed.log and "Failed" in statuses, \
            f"{relative}: expected a failed run whose log holds {expect!r}: review NOT_HERE"
        return Observed("not-runnable", problems=[NOT_HERE[relative][1]], log=observed.log)
    return observed


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}


def documented_features() -> set[str]:
    """The unsupported features docs/pipeline-run-locally.md lists, one `- ` + backquoted id a line."""
    text = (ROOT / "docs/pipeline-run-locally.md").read_text()
    section = text.split("## Unsupported features", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([a-z0-9-]+)`", section, re.M))


