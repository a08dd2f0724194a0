"""Every Task against the house rules, and in step with the Python it runs.

Catalog metadata, descriptions, pinned images, params only through `PARAM_*` env; for each step
`cssr-tasks <command>`: every field of the command's Params arrives as `PARAM_<NAME>`, and the
Task's results are the command's Result fields (or written by a non-Python step).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cssr_tasks.cli import COMMANDS
from cssr_tasks.params import env_name, param_name
from cssr_tasks.results import result_name

from lintsupport import task_files

HUB_CATEGORIES = {
    "Automation", "Build Tools", "CLI", "Cloud", "Code Quality", "Continuous Integration", "Deployment",
    "Developer Tools", "Image Build", "Integration & Delivery", "Git", "Kubernetes", "Messaging", "Monitoring",
    "Networking", "Openshift", "Publishing", "Security", "Storage", "Testing",
}
SHARED_PARAMS = {"tasks-image", "verbose"}


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def tasks() -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in task_files()]


def python_steps(task: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    found = []
    for step in task["spec"]["steps"]:
        command = step.get("command") or []
        if len(command) >= 2 and command[0] == "cssr-tasks" and command[1] in COMMANDS:
            found.append((step, importlib.import_module(COMMANDS[command[1]])))
    return found


def env_names(task: dict[str, Any], step: dict[str, Any]) -> dict[str, str]:
    template = task["spec"].get("stepTemplate") or {}
    env = {e["name"]: e.get("value", "") for e in template.get("env") or []}
    env.update({e["name"]: e.get("value", "") for e in step.get("env") or []})
    return env


@pytest.mark.parametrize("path", tasks())
def test_file_name_is_the_task_name(path):
    task = load(path)
    assert task["apiVersion"] == "tekton.dev/v1"
    assert task["kind"] == "Task"
    assert task["metadata"]["name"] == path.stem
    assert path.stem.startswith("cssr-")


@pytest.mark.parametrize("path", tasks())
def test_catalog_metadata(path):
    meta = load(path)["metadata"]
    annotations = meta.get("annotations") or {}
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", meta["labels"]["app.kubernetes.io/version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", annotations["tekton.dev/pipelines.minVersion"])
    assert {c.strip() for c in annotations["tekton.dev/categories"].split(",")} <= HUB_CATEGORIES
    assert annotations["tekton.dev/tags"].strip()
    assert annotations["tekton.dev/displayName"].strip()
    assert all(re.fullmatch(r"[a-z0-9]+/[a-z0-9]+", p.strip()) for p in annotations["tekton.dev/platforms"].split(","))
    description = load(path)["spec"]["description"].strip()
    assert "\n" in description, "a one-line description followed by a paragraph"


@pytest.mark.parametrize("path", tasks())
def test_everything_is_described(path):
    spec = load(path)["spec"]
    for kind in ("params", "results", "workspaces"):
        for item in spec.get(kind) or []:
            assert (item.get("description") or "").strip(), f"{kind[:-1]} {item['name']} has no description"
    for param in spec.get("params") or []:
        assert param.get("type") in ("string", "array", "object"), f"param {param['name']} has no type"
    names = {p["name"] for p in spec.get("params") or []}
    assert SHARED_PARAMS <= names, f"shared params missing: {SHARED_PARAMS - names}"


@pytest.mark.parametrize("path", tasks())
def test_images_are_pinned_and_params_stay_out_of_scripts(path):
    task = load(path)
    spec = task["spec"]
    defaults = {p["name"]: p.get("default", "") for p in spec.get("params") or []}
    for step in spec["steps"] + [spec.get("stepTemplate") or {}]:
        image = step.get("image")
        if image:
            match = re.fullmatch(r"\$\(params\.([-a-z0-9]+)\)", image)
            image = defaults.get(match.group(1), "") if match else image
            assert re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", image), f"image {image} is not pinned"
            assert not image.endswith(":latest"), f"image {image} uses :latest"
        assert "$(params." not in (step.get("script") or ""), f"step {step.get('name')} has $(params.*) in its script"


@pytest.mark.parametrize("path", tasks())
def test_param_env_follows_one_rule(path):
    task = load(path)
    for step in task["spec"]["steps"]:
        for name, value in env_names(task, step).items():
            if name.startswith("PARAM_"):
                # A command may also take whether a workspace is bound: PARAM_<WORKSPACE>_BOUND.
                match = re.fullmatch(r"\$\(params\.([-a-z0-9]+)\)", value) or \
                    re.fullmatch(r"\$\(workspaces\.([-a-z0-9]+)\.bound\)", value)
                expected = match and env_name(match.group(1) + ("-bound" if value.startswith("$(workspaces.") else ""))
                assert expected == name, f"{name}: {value} breaks PARAM_<NAME> = $(params.<name>) " \
                                         "(or PARAM_<WORKSPACE>_BOUND = $(workspaces.<workspace>.bound))"


@pytest.mark.parametrize("path", tasks())
def test_python_steps_get_every_param_they_read(path):
    task = load(path)
    steps = python_steps(task)
    assert steps, "a Task runs at least one cssr-tasks command"
    for step, module in steps:
        if not hasattr(module, "Params"):
            continue
        env = env_names(task, step)
        for field in dataclasses.fields(module.Params):
            name = field.metadata.get("param", param_name(field.name))
            assert env_name(name) in env, f"step {step['name']}: {module.__name__}.Params.{field.name} is not passed " \
                                          f"as {env_name(name)}"


@pytest.mark.parametrize("path", tasks())
def test_results_are_the_commands_results(path):
    task = load(path)
    declared = {r["name"] for r in task["spec"].get("results") or []}
    from_python = set()
    for _, module in python_steps(task):
        if hasattr(module, "Result"):
            from_python |= {result_name(f.name) for f in dataclasses.fields(module.Result)}
    scripts = " ".join(s.get("script") or "" for s in task["spec"]["steps"])
    from_scripts = set(re.findall(r"\$\(results\.([-a-z0-9]+)\.path\)", scripts))
    assert declared <= from_python | from_scripts, f"results declared but written by no step: " \
                                                   f"{declared - from_python - from_scripts}"
    assert from_python <= declared, f"command results the Task does not declare: {from_python - declared}"
