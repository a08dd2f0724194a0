"""Fleet installs (docs/fleet.md): the suite's kustomization, unchanged, under Argo CD and Open Cluster Management.

Covers: every cluster overlay of examples/fleet names the suite by a pinned URL, renders (with this checkout in
place of the URL) the same objects as the root install, every object validates, and its settings reach the Pipeline,
the `modules` claim and the watcher (the fleet component is what carries them there: without it the claim keeps the
root's class); the fleet component repeats the root's replacements exactly; a setting that names a moved param stops
the build; the Argo CD Application and ApplicationSet (and the Application the set makes for each overlay) validate
against Argo CD's CRDs; scripts/fleet-manifestwork wraps each overlay into a ManifestWork that validates against
OCM's CRD, holds the render unchanged after the namespace, orphans the namespace, and refuses bad input in one line;
the ACM Policy (and its ConfigurationPolicy), Placement and PlacementBinding validate and check objects the install makes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from install import find, kustomize, render, rendered_repo

from lintsupport import REPO
from schemas import validate_object

FLEET = REPO / "examples" / "fleet"
CLUSTERS = sorted(p.name for p in (FLEET / "overlays").iterdir() if p.is_dir())
SUITE_URL = re.compile(r"^https://\S+\.git\?ref=(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
MANIFESTWORK = REPO / "scripts" / "fleet-manifestwork"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def fleet_copy(tmp_path: Path) -> Path:
    """The fleet repository in tmp_path, its overlays pointing at this checkout instead of the suite's URL."""
    fleet = tmp_path / "fleet"
    shutil.copytree(FLEET, fleet)
    for overlay in (fleet / "overlays").iterdir():
        path = overlay / "kustomization.yaml"
        [url] = load(path)["resources"]
        path.write_text(path.read_text().replace(url, os.path.relpath(REPO, overlay)))
    return fleet


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    fleet = fleet_copy(tmp_path_factory.mktemp("fleet"))
    return {cluster: render(fleet / "overlays" / cluster) for cluster in CLUSTERS}


def settings_pairs(cluster: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    ops = load(FLEET / "overlays" / cluster / "settings" / "settings.yaml")
    assert isinstance(ops, list) and ops and len(ops) % 2 == 0, f"{cluster}: settings.yaml holds (test, replace) pairs"
    return list(zip(ops[::2], ops[1::2], strict=True))


def defaults(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: p.get("default") for p in pipeline["spec"]["params"]}


def identity(objects: Any) -> list[tuple[str, str, str]]:
    return sorted((o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects)


# -- the overlays ------------------------------------------------------------------------------------------------


def test_there_are_overlays_and_each_names_the_suite_by_a_pinned_url():
    assert len(CLUSTERS) >= 2
    for cluster in CLUSTERS:
        kustomization = load(FLEET / "overlays" / cluster / "kustomization.yaml")
        [url] = kustomization["resources"]
        assert SUITE_URL.match(url), f"{cluster}: name the suite by its Git URL pinned to a tag or commit, not {url}"
        # settings first, the fleet component last: the component copies the settings into the claim and watcher
        assert kustomization["components"] == ["settings", "../../components/fleet"], cluster


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_an_overlay_renders_the_root_install_and_every_object_validates(rendered, cluster):
    objects = rendered[cluster]
    assert identity(objects) == identity(rendered_repo())
    assert [p for o in objects for p in validate_object(o)] == []


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_an_overlays_settings_reach_the_pipeline_and_only_they_change(rendered, cluster):
    pipeline = find(rendered[cluster], "Pipeline", "cssr-deploy")
    root = defaults(find(rendered_repo(), "Pipeline", "cssr-deploy"))
    names = [p["name"] for p in pipeline["spec"]["params"]]
    wanted = dict(root)
    for test, replace in settings_pairs(cluster):
        index = int(test["path"].split("/")[3])
        assert (test["op"], test["path"], names[index]) == ("test", f"/spec/params/{index}/name", test["value"]), test
        assert (replace["op"], replace["path"]) == ("replace", f"/spec/params/{index}/default"), replace
        assert isinstance(replace["value"], str), f"{cluster}: quote {test['value']}'s value, params are strings"
        wanted[test["value"]] = replace["value"]
    assert defaults(pipeline) == wanted
    assert wanted != root, f"{cluster} sets nothing of its own"


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_the_claim_and_the_watcher_follow_the_clusters_settings(rendered, cluster):
    settings = defaults(find(rendered[cluster], "Pipeline", "cssr-deploy"))
    claim = find(rendered[cluster], "PersistentVolumeClaim", "modules")
    assert claim["spec"]["storageClassName"] == settings["modules-storage-class"]
    watcher = find(rendered[cluster], "Deployment", "cssr-watch-pools")
    assert [c["image"] for c in watcher["spec"]["template"]["spec"]["containers"]] == [settings["tasks-image"]]


def test_edge_2_moves_the_claim_to_its_own_class(rendered):
    """The case the fleet component exists for, with values spelled out (not read back from the render)."""
    assert find(rendered["edge-2"], "PersistentVolumeClaim", "modules")["spec"]["storageClassName"] == "nfs-rwx"
    assert find(rendered_repo(), "PersistentVolumeClaim", "modules")["spec"]["storageClassName"] != "nfs-rwx"


def test_without_the_fleet_component_the_claim_keeps_the_roots_class(tmp_path):
    """Why the component exists: kustomize runs the root's replacements before an overlay's patches."""
    fleet = fleet_copy(tmp_path)
    path = fleet / "overlays" / "edge-2" / "kustomization.yaml"
    path.write_text(path.read_text().replace("  - ../../components/fleet\n", ""))
    objects = render(path.parent)
    assert defaults(find(objects, "Pipeline", "cssr-deploy"))["modules-storage-class"] == "nfs-rwx"
    assert find(objects, "PersistentVolumeClaim", "modules")["spec"]["storageClassName"] == "ocs-storagecluster-cephfs"


def test_the_fleet_component_repeats_the_roots_replacements_exactly():
    assert load(FLEET / "components" / "fleet" / "kustomization.yaml")["replacements"] == \
        load(REPO / "kustomization.yaml")["replacements"]


def test_a_setting_for_a_param_that_moved_stops_the_build(tmp_path):
    fleet = fleet_copy(tmp_path)
    path = fleet / "overlays" / "edge-2" / "settings" / "settings.yaml"
    path.write_text(path.read_text().replace("/spec/params/19/name, value: modules", "/spec/params/18/name, value: modules"))
    run = kustomize(path.parent.parent)
    assert run.returncode != 0
    assert "testing value /spec/params/18/name failed" in run.stderr


def test_the_fleet_files_pass_yamllint():
    files = sorted(map(str, FLEET.rglob("*.yaml")))
    run = subprocess.run([str(Path(sys.executable).parent / "yamllint"), "-s", "-c", str(REPO / ".yamllint"), *files],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout


# -- Argo CD -----------------------------------------------------------------------------------------------------


def test_the_argo_cd_application_validates_and_builds_an_overlay():
    app = load(FLEET / "argocd" / "application.yaml")
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    assert validate_object(app) == []
    assert (FLEET / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
    assert "CreateNamespace=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_a_broken_application_fails_its_schema():
    app = load(FLEET / "argocd" / "application.yaml")
    app["spec"]["source"]["kustomise"] = {}
    assert any("kustomise" in p for p in validate_object(app))


def instantiate(template: Any, values: dict[str, str]) -> Any:
    """The ApplicationSet's Go template with the cluster generator's `.name` and `.server`, for plain `{{.key}}`s."""
    text = json.dumps(template)
    for key, value in values.items():
        text = text.replace("{{." + key + "}}", value)
    assert "{{" not in text, f"the template uses more than {sorted(values)}: extend instantiate()"
    return json.loads(text)


def test_the_application_set_validates_and_makes_a_valid_application_per_overlay():
    appset = load(FLEET / "argocd" / "applicationset.yaml")
    assert validate_object(appset) == []
    for cluster in CLUSTERS:
        app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
               **instantiate(appset["spec"]["template"], {"name": cluster, "server": f"https://api.{cluster}.example.com:6443"})}
        app["metadata"]["namespace"] = appset["metadata"]["namespace"]
        assert validate_object(app) == [], cluster
        assert (FLEET / app["spec"]["source"]["path"] / "kustomization.yaml").is_file(), cluster


# -- Open Cluster Management -------------------------------------------------------------------------------------


def manifestwork(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MANIFESTWORK), *args], input=text, capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_the_manifestwork_of_an_overlay_validates_and_holds_the_render_unchanged(rendered, cluster):
    run = manifestwork(yaml.safe_dump_all(rendered[cluster]), "--cluster", cluster)
    assert run.returncode == 0, run.stderr
    work = yaml.safe_load(run.stdout)
    assert validate_object(work) == []
    assert work["metadata"]["namespace"] == cluster
    manifests = work["spec"]["workload"]["manifests"]
    assert manifests[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cssr"}}
    assert manifests[1:] == rendered[cluster]
    assert [p for m in manifests for p in validate_object(m)] == []
    assert work["spec"]["deleteOption"] == {
        "propagationPolicy": "SelectivelyOrphan",
        "selectivelyOrphans": {"orphaningRules": [{"group": "", "resource": "namespaces", "name": "cssr", "namespace": ""}]}}
    # OCM's webhook limit (open-cluster-management.io/api workvalidator: 500 * 1024 bytes of JSON)
    assert sum(len(json.dumps(m, separators=(",", ":"))) for m in manifests) < 500 * 1024


@pytest.mark.parametrize(("text", "args", "message"), [
    ("", ["--cluster", "edge-1"], "no objects on the input"),
    ("kind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\nkind: ConfigMap\nmetadata: {name: b, namespace: y}\n",
     ["--cluster", "edge-1"], "name 2 namespaces (x, y)"),
    ("kind: ConfigMap\nmetadata: {generateName: a-}\n", ["--cluster", "edge-1"], "a ConfigMap has no metadata.name"),
    ("kind: ConfigMap\nmetadata: {name: a, namespace: x}\n", ["--cluster", "Edge_1"], "--cluster 'Edge_1' is not a DNS label"),
    ("a: [\n", ["--cluster", "edge-1"], "the input is not YAML"),
], ids=["empty", "two-namespaces", "unnamed", "bad-cluster", "not-yaml"])
def test_bad_input_to_the_manifestwork_script_ends_in_one_line(text, args, message):
    run = manifestwork(text, *args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_the_acm_policy_validates_and_checks_objects_the_install_makes():
    docs = {d["kind"]: d for d in yaml.safe_load_all((FLEET / "ocm" / "policy-installed.yaml").read_text())}
    assert set(docs) == {"Policy", "Placement", "PlacementBinding"}
    assert [p for d in docs.values() for p in validate_object(d)] == []
    [template] = docs["Policy"]["spec"]["policy-templates"]
    assert validate_object(template["objectDefinition"]) == []  # the ConfigurationPolicy, against its own CRD
    install = {(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in rendered_repo()}
    for wanted in template["objectDefinition"]["spec"]["object-templates"]:
        meta = wanted["objectDefinition"]["metadata"]
        assert (wanted["objectDefinition"]["apiVersion"], wanted["objectDefinition"]["kind"], meta["name"],
                meta["namespace"]) in install
    binding = docs["PlacementBinding"]
    assert binding["placementRef"]["name"] == docs["Placement"]["metadata"]["name"]
    assert binding["subjects"][0]["name"] == docs["Policy"]["metadata"]["name"]
