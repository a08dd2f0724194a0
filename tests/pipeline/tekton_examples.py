"""Tekton's own examples (tektoncd/pipeline, examples/v1) run through the local executor.

The examples are data, fetched at the version crds/go.mod pins (its zip checked by crds/go.sum)
with `go mod download`: nothing of them is copied into this repository. Each PipelineRun or
TaskRun becomes what the executor runs:
- a PipelineRun: its Pipeline (pipelineRef to a Pipeline of the same file, or pipelineSpec),
  its params as --param (a param only an embedded pipelineSpec uses is declared on the wrapper,
  as Tekton propagates it), its workspaces as folders;
- a TaskRun: a Pipeline of one task holding the TaskRun's taskRef or taskSpec, params,
  workspaces and timeout.
Every image runs as a local shell (`--image-command IMAGE=env`): a command runs from PATH, a
script by its shebang (Tekton's `#!/bin/sh` + `set -e` when it has none). ConfigMaps and
Secrets of the same file are the cluster that env valueFrom, envFrom and volumes read.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cssr_tasks.errors import ConfigError
from cssr_tasks.tekton.model import Map, load_documents
from cssr_tasks.tekton.run import Executor, Options
from cssr_tasks.tekton.unsupported import named_features

ROOT = Path(__file__).resolve().parents[2]
MODULE = "github.com/tektoncd/pipeline"
FOLDERS = ("examples/v1/pipelineruns", "examples/v1/taskruns")
# The images' shells (busybox ash, bash) accept `==` in `[`; this machine's /bin/sh (dash) does not:
# a script that Tekton starts with #!/bin/sh runs with bash, any other shebang as written.
SHELL = "sh -c 'if head -n1 \"$1\" 2>/dev/null | grep -qx \"#!/bin/sh\"; then exec bash \"$@\"; fi; exec \"$@\"' shell"
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9.-]*(?::\d+)?(?:/[\w.-]+)+(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$")


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


def example_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root / "examples/v1")) for folder in FOLDERS
                  for p in (root / folder).rglob("*.yaml"))


@dataclass
class Observed:
    """What happened to one example: its class, and the evidence."""

    kind: str  # run | refused | accepted | wrapper-refused
    status: str = ""  # the run's status; for several runs in a file, each joined by ","
    tasks: dict[str, str] = field(default_factory=dict)  # "<run>/<task>" or "<task>" -> status[/reason]
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
        else:
            found = _named(docs, "Pipeline", str(ref["name"]))
            if found is None:
                raise NotWrappable(f"pipelineRef {ref['name']} is not in the example")
            pipeline_spec, embedded = found.get("spec") or Map(), False
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


def images(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if _IMAGE.match(value.strip()):
            yield value.strip()
    elif isinstance(value, list):
        for item in value:
            yield from images(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from images(item)


def run_example(root: Path, relative: str) -> Observed:
    path = root / "examples/v1" / relative
    docs = load_documents(path)
    runs = [d for d in docs if d.get("kind") in ("PipelineRun", "TaskRun")]
    store = {(str(d["kind"]), str((d.get("metadata") or {}).get("name"))): _data(d)
             for d in docs if d.get("kind") in ("Secret", "ConfigMap")}
    commands = {image: SHELL for image in images(docs)}
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
            try:
                executor = Executor(options, out=out, read_data=lambda k, n, _ns: store.get((k, n)))
            except ConfigError as e:
                problems = [line.strip()[2:] for line in str(e).splitlines()[1:]] or [str(e)]
                return Observed("refused", features=named_features(str(e)), problems=problems)
            outcome = executor.execute()
            statuses.append(outcome.status)
            prefix = f"{index}/" if len(runs) > 1 else ""
            for state in outcome.tasks:
                shown = state.status if state.status == "Succeeded" else f"{state.status}/{state.reason}"
                observed.tasks[prefix + state.name] = shown
            observed.log += out.getvalue()
    observed.status = ",".join(statuses)
    return observed


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}


def documented_features() -> set[str]:
    """The unsupported features docs/pipeline-run-locally.md lists, one `- ` + backquoted id a line."""
    text = (ROOT / "docs/pipeline-run-locally.md").read_text()
    section = text.split("## Unsupported features", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([a-z0-9-]+)`", section, re.M))


