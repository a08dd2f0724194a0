"""The suite installed as a user installs it: `kubectl apply -k` of an overlay of the repository
root into a namespace, with the settings a user writes (param defaults of the Pipeline and Tasks,
the upgrade trigger's pool list), as kustomize JSON patches.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from e2e.harness import world_c

ROOT = Path(__file__).resolve().parents[2]


def _param_index(path: Path, name: str) -> int:
    doc = yaml.safe_load(path.read_text())
    return [p["name"] for p in doc["spec"]["params"]].index(name)


def task_defaults(task: str, values: Mapping[str, str]) -> dict[str, Any]:
    """A patch of the Task's param defaults."""
    path = ROOT / "tasks" / f"{task}.yaml"
    ops = [{"op": "replace", "path": f"/spec/params/{_param_index(path, k)}/default", "value": v}
           for k, v in values.items()]
    return {"target": {"group": "tekton.dev", "version": "v1", "kind": "Task", "name": task},
            "patch": json.dumps(ops)}


def pipeline_defaults(values: Mapping[str, str]) -> dict[str, Any]:
    """A patch of cssr-deploy's param defaults: what settings.yaml holds on a user's install."""
    path = ROOT / "pipelines" / "cssr-deploy.yaml"
    ops = [{"op": "replace", "path": f"/spec/params/{_param_index(path, k)}/default", "value": v}
           for k, v in values.items()]
    return {"target": {"group": "tekton.dev", "version": "v1", "kind": "Pipeline", "name": "cssr-deploy"},
            "patch": json.dumps(ops)}


def trigger_pools(pools: list[str]) -> list[dict[str, Any]]:
    """The pools of the upgrade trigger, in both places triggers/eventlistener.yaml and
    triggers/watcher.yaml say to keep equal: the CEL filter's list and the watcher's PARAM_POOLS."""
    listener = yaml.safe_load((ROOT / "triggers" / "eventlistener.yaml").read_text())
    interceptor = listener["spec"]["triggers"][0]["interceptors"][0]
    index = [p["name"] for p in interceptor["params"]].index("filter")
    listed = ", ".join(f"'{p}'" for p in pools)
    cel, count = re.subn(r"body\.pool in \[[^\]]*\]", f"body.pool in [{listed}]", interceptor["params"][index]["value"])
    assert count == 1, "triggers/eventlistener.yaml's filter has no `body.pool in [...]` list"
    watcher = yaml.safe_load((ROOT / "triggers" / "watcher.yaml").read_text())
    env = [e["name"] for e in watcher["spec"]["template"]["spec"]["containers"][0]["env"]]
    pools_env = f"/spec/template/spec/containers/0/env/{env.index('PARAM_POOLS')}/value"
    return [
        {"target": {"group": "triggers.tekton.dev", "kind": "EventListener", "name": "cssr-deploy"},
         "patch": json.dumps([{"op": "replace", "path": f"/spec/triggers/0/interceptors/0/params/{index}/value",
                               "value": cel}])},
        {"target": {"group": "apps", "kind": "Deployment", "name": "cssr-watch-pools"},
         "patch": json.dumps([{"op": "replace", "path": pools_env, "value": ",".join(pools)}])},
    ]


def overlay(folder: Path, namespace: str, patches: list[dict[str, Any]]) -> Path:
    """The overlay's patches stand for a user's settings.yaml; the root's replacements run again
    after them, as they run after settings.yaml (the watcher's image follows tasks-image)."""
    root = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace, "resources": [os.path.relpath(ROOT, folder)], "patches": patches,
        "replacements": root["replacements"]}))
    return folder


def base_image() -> str:
    """The busybox shell image (Tekton's `shell`, sh and coreutils as applets) by digest, at the
    pods' registry address: UBI micro is unreachable here."""
    head = subprocess.run(["curl", "-sSI", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                           "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
                           "http://127.0.0.1:25000/v2/tekton/shell/manifests/v1.15.0"],
                          capture_output=True, text=True, check=True).stdout
    digest = re.search(r"(?im)^docker-content-digest:\s*(\S+)", head)
    assert digest, head
    return f"{world_c.POD_REGISTRY}/tekton/shell:v1.15.0@{digest.group(1)}"
