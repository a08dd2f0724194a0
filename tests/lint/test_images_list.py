"""Disconnected clusters (docs/disconnected.md): the list of every image the suite pulls, and what mirrors it.

Covers: docs/images.txt and examples/disconnected/imageset-config.yaml are what scripts/list-images makes from the
rendered install and the Containerfile (so a Task or setting that changes an image without them fails here); the list
holds every external image a Pipeline default or an unpassed Task default names, and the Containerfile's bases; a
changed step image or setting changes the list; --require-digests refuses tags and passes digests; the
ImageSetConfiguration has oc-mirror v2's structure and carries the platform channel (which brings the Driver Toolkit)
and each image by digest; the example ImageDigestMirrorSet and ImageTagMirrorSet validate against OpenShift's CRDs and
cover each listed image (by digest, and by tag where only a tag is pinned); bad input ends in one line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from test_kustomize import copy_install

from install import render, rendered_repo

from lintsupport import REPO
from schemas import validate_object

SCRIPT = REPO / "scripts" / "list-images"
LIST = REPO / "docs" / "images.txt"
IMAGESET = REPO / "examples" / "disconnected" / "imageset-config.yaml"
MIRRORSETS = REPO / "examples" / "disconnected" / "imagedigestmirrorset.yaml"
CONTAINERFILE = REPO / "Containerfile"
INTERNAL = "image-registry.openshift-image-registry.svc:5000/"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
BUILDAH = "registry.access.redhat.com/ubi9/buildah:9.0.0-19@sha256:"


def list_images(objects: Any, *args: str, containerfile: Path = CONTAINERFILE) -> subprocess.CompletedProcess[str]:
    """Run from the repository, as the command in docs/images.txt's header is (its Containerfile path is relative)."""
    return subprocess.run([sys.executable, str(SCRIPT), "--containerfile", str(containerfile.relative_to(REPO))
                           if containerfile.is_relative_to(REPO) else str(containerfile), *args],
                          input=yaml.safe_dump_all(list(objects)), capture_output=True, text=True, check=False,
                          cwd=REPO)


def listed(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line and not line.startswith("#")]


def generated(*args: str) -> str:
    run = list_images(rendered_repo(), *args)
    assert run.returncode == 0, run.stderr
    return run.stdout


# -- the checked-in files are current --------------------------------------------------------------------------


def test_the_image_list_is_current():
    assert LIST.read_text() == generated(), \
        "docs/images.txt is stale: oc kustomize . | scripts/list-images --containerfile Containerfile > docs/images.txt"


def test_the_image_set_is_current():
    assert IMAGESET.read_text() == generated("--imageset"), (
        "examples/disconnected/imageset-config.yaml is stale: "
        "oc kustomize . | scripts/list-images --containerfile Containerfile --imageset > examples/disconnected/imageset-config.yaml")


def external_image_defaults(objects: Any) -> set[str]:
    """An oracle apart from the script: every `*-image` default of the Pipeline, and of a Task where the Pipeline
    does not pass that param, that names an image outside the cluster."""
    found = set()
    pipeline = next(o for o in objects if o["kind"] == "Pipeline")
    passed = {(e["taskRef"]["name"], p["name"]) for e in pipeline["spec"]["tasks"] + pipeline["spec"].get("finally", [])
              for p in e.get("params", [])}
    for obj in objects:
        if obj["kind"] not in ("Pipeline", "Task"):
            continue
        for param in obj["spec"].get("params", []):
            value = param.get("default")
            if not param["name"].endswith("-image") or not isinstance(value, str) or not value:
                continue
            if obj["kind"] == "Task" and (obj["metadata"]["name"], param["name"]) in passed:
                continue
            if not value.startswith(INTERNAL) and "$(" not in value:
                found.add(value)
    return found


def test_the_list_holds_every_external_image_default_and_the_containerfile_bases():
    images = listed(LIST.read_text())
    assert len(images) == len(set(images)) >= 5
    text = CONTAINERFILE.read_text()
    # the bases are build arguments (e2e/ builds FROM Debian): the BuildConfig pulls their defaults
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)$", text, re.MULTILINE))
    named = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    bases = {re.sub(r"^\$\{(\w+)\}$", lambda m: defaults[m[1]], name) for name in named}
    assert bases and all("@sha256:" in base for base in bases), bases
    assert external_image_defaults(rendered_repo()) | bases == set(images)
    assert not any(i.startswith(INTERNAL) for i in images), "built in the cluster: nothing to mirror"


# -- it follows the YAML ---------------------------------------------------------------------------------------


def test_a_task_image_changed_without_the_list_fails_the_check(tmp_path):
    copy_install(tmp_path)
    task = tmp_path / "tasks" / "cssr-build-init-image.yaml"
    text = task.read_text()
    assert BUILDAH in text
    new_digest = "0" * 64
    task.write_text(re.sub(re.escape(BUILDAH) + "[0-9a-f]{64}", BUILDAH + new_digest, text))
    run = list_images(render(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout != LIST.read_text()
    assert BUILDAH + new_digest in listed(run.stdout)
    assert not any(i.startswith(BUILDAH) and not i.endswith(new_digest) for i in listed(run.stdout))


def test_a_setting_changes_the_listed_image(tmp_path):
    copy_install(tmp_path)
    settings = tmp_path / "settings.yaml"
    pinned = "quay.io/juniper-128t/128t-5121@sha256:" + "1" * 64
    settings.write_text(settings.read_text().replace("value: quay.io/juniper-128t/128t-5121:5.1.2-1}", f"value: {pinned}}}"))
    images = listed(list_images(render(tmp_path)).stdout)
    assert pinned in images
    assert "quay.io/juniper-128t/128t-5121:5.1.2-1" not in images


def test_require_digests_names_the_tags_and_passes_when_all_are_digests(tmp_path):
    run = list_images(rendered_repo(), "--require-digests")
    tags = [i for i in listed(LIST.read_text()) if not DIGEST.search(i)]
    assert run.returncode == 1 and run.stdout == ""
    assert all(t in run.stderr for t in tags) and len(run.stderr.strip().splitlines()) == 1
    copy_install(tmp_path)
    for path in [tmp_path / "settings.yaml", *sorted((tmp_path / "tasks").glob("*.yaml")), tmp_path / "pipelines" / "cssr-deploy.yaml"]:
        text = path.read_text()
        for n, tag in enumerate(tags):
            text = text.replace(tag, tag.rsplit(":", 1)[0] + "@sha256:" + str(n) * 64)
        path.write_text(text)
    run = list_images(render(tmp_path), "--require-digests")
    assert run.returncode == 0, run.stderr
    assert all(DIGEST.search(i) for i in listed(run.stdout))


@pytest.mark.parametrize(("text", "args", "message"), [
    ("kind: ConfigMap\nmetadata: {name: a}\n", [], "the input holds no Pipeline"),
    ("a: [\n", [], "the input is not YAML"),
    (None, ["--ocp", "4"], "--ocp '4' is not an OpenShift minor version"),
], ids=["no-pipeline", "not-yaml", "bad-ocp"])
def test_bad_input_ends_in_one_line(text, args, message):
    run = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False,
                         input=text if text is not None else yaml.safe_dump_all(list(rendered_repo())))
    assert run.returncode == 2 and run.stdout == ""
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_missing_containerfile_is_named(tmp_path):
    run = list_images(rendered_repo(), containerfile=tmp_path / "Containerfile")
    assert run.returncode == 2
    assert f"--containerfile {tmp_path / 'Containerfile'} does not exist" in run.stderr


# -- oc-mirror's ImageSetConfiguration ----------------------------------------------------------------------------

# oc-mirror v2's ImageSetConfiguration is read by oc-mirror, not served by a cluster: no CRD exists. Its structure,
# from openshift/oc-mirror v2/internal/pkg/api/v2alpha1/type_config.go (commit 1b88349) and type_config_include.go:
# Mirror{platform, operators, additionalImages, helm, blockedImages, samples}, Platform{graph, channels,
# architectures, release, kubeVirtContainer}, ReleaseChannel{name, type, minVersion, maxVersion, shortestPath, full},
# Operator{catalog, packages, targetCatalog, targetTag, full, skipDependencies, targetCatalogSourceTemplate},
# Image{name}; documented as apiVersion mirror.openshift.io/v2alpha1 ("oc-mirror plugin v2", OpenShift 4.18+ docs).
NAME = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}},
        "additionalProperties": False}
IMAGESET_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "mirror"],
    "properties": {
        "apiVersion": {"const": "mirror.openshift.io/v2alpha1"}, "kind": {"const": "ImageSetConfiguration"},
        "archiveSize": {"type": "integer"},
        "mirror": {"type": "object", "additionalProperties": False, "properties": {
            "platform": {"type": "object", "additionalProperties": False, "properties": {
                "graph": {"type": "boolean"}, "architectures": {"type": "array", "items": {"type": "string"}},
                "release": {"type": "string"}, "kubeVirtContainer": {"type": "boolean"},
                "channels": {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["name"],
                             "properties": {"name": {"type": "string"}, "type": {"enum": ["ocp", "okd"]},
                                            "minVersion": {"type": "string"}, "maxVersion": {"type": "string"},
                                            "shortestPath": {"type": "boolean"}, "full": {"type": "boolean"}}}}}},
            "operators": {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["catalog"],
                          "properties": {"catalog": {"type": "string"}, "packages": {"type": "array", "items": {
                              "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
                              "targetCatalog": {"type": "string"}, "targetTag": {"type": "string"},
                              "full": {"type": "boolean"}, "skipDependencies": {"type": "boolean"},
                              "targetCatalogSourceTemplate": {"type": "string"}}}},
            "additionalImages": {"type": "array", "items": NAME},
            "blockedImages": {"type": "array", "items": NAME},
            "helm": {"type": "object"}, "samples": {"type": "array"}}}}}


def test_the_image_set_has_oc_mirror_v2s_structure():
    config = yaml.safe_load(IMAGESET.read_text())
    jsonschema.validate(config, IMAGESET_SCHEMA)
    broken = yaml.safe_load(IMAGESET.read_text())
    broken["mirror"]["additionalimages"] = broken["mirror"].pop("additionalImages")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, IMAGESET_SCHEMA)


def without_tag(ref: str) -> str:
    name, digest = ref.split("@")
    return (name.rsplit(":", 1)[0] if name.rfind(":") > name.rfind("/") else name) + "@" + digest


def test_the_image_set_mirrors_the_release_the_operators_and_each_image_by_digest():
    mirror = yaml.safe_load(IMAGESET.read_text())["mirror"]
    assert mirror["platform"]["channels"] == [{"name": "stable-4.20", "type": "ocp"}]  # the release: it has the DTK
    assert {p["name"] for o in mirror["operators"] for p in o["packages"]} >= {"openshift-pipelines-operator-rh"}
    expected = sorted(without_tag(i) if DIGEST.search(i) else i for i in listed(LIST.read_text()))
    assert [i["name"] for i in mirror["additionalImages"]] == expected
    assert "registry.access.redhat.com/ubi9/buildah@sha256:" + LIST.read_text().split(BUILDAH)[1][:64] in expected


def test_another_openshift_version_moves_the_channel_and_the_catalog():
    mirror = yaml.safe_load(generated("--imageset", "--ocp", "4.18"))["mirror"]
    assert mirror["platform"]["channels"][0]["name"] == "stable-4.18"
    assert mirror["operators"][0]["catalog"] == "registry.redhat.io/redhat/redhat-operator-index:v4.18"


# -- ImageDigestMirrorSet and ImageTagMirrorSet -------------------------------------------------------------------


def mirror_sets() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MIRRORSETS.read_text())}


def test_the_mirror_sets_validate_against_openshifts_crds():
    sets = mirror_sets()
    assert set(sets) == {"ImageDigestMirrorSet", "ImageTagMirrorSet"}
    assert [p for s in sets.values() for p in validate_object(s)] == []
    broken = sets["ImageDigestMirrorSet"]
    broken["spec"]["imageDigestMirrors"][0]["mirrorSourcePolicy"] = "Never"
    assert validate_object(broken)


def covered(image: str, sources: list[str]) -> bool:
    repository = re.split(r"[@]", image)[0]
    repository = repository.rsplit(":", 1)[0] if repository.rfind(":") > repository.rfind("/") else repository
    return any(repository == s or repository.startswith(s + "/") for s in sources)


def test_the_mirror_sets_cover_every_listed_image():
    sets = mirror_sets()
    digest_sources = [m["source"] for m in sets["ImageDigestMirrorSet"]["spec"]["imageDigestMirrors"]]
    tag_sources = [m["source"] for m in sets["ImageTagMirrorSet"]["spec"]["imageTagMirrors"]]
    for image in listed(LIST.read_text()):
        assert covered(image, digest_sources if DIGEST.search(image) else tag_sources), image
