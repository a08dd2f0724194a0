"""The CRD schemas come from pinned Go modules (crds/go.mod + go.sum), fetched by scripts/fetch-crds.

Covers: every pin has its checksum; the fetch yields a CRD for every custom kind the suite writes,
is idempotent, and refuses a zip whose checksum differs from go.sum and a glob that matches nothing.
The module zips come from the Go module cache, which `make crds` filled, so this runs offline.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support import REPO, require_tool

FETCH = REPO / "scripts" / "fetch-crds"
PINS = REPO / "crds"


def fetch(out: Path, pins: Path = PINS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FETCH), "--out", str(out), "--pins", str(pins)],
                          capture_output=True, text=True, check=False, timeout=300)


def pinned() -> list[tuple[str, str]]:
    return re.findall(r"^\s+(\S+)\s+(v\S+)\s*//\s*crds:", (PINS / "go.mod").read_text(), re.MULTILINE)


def test_every_pin_has_a_checksum_in_go_sum():
    sums = (PINS / "go.sum").read_text()
    assert len(pinned()) >= 6
    for module, version in pinned():
        assert re.search(rf"^{re.escape(module)} {re.escape(version)} h1:", sums, re.MULTILINE), module


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("go")
    out = tmp_path_factory.mktemp("crds") / "crds"
    result = fetch(out)
    assert result.returncode == 0, result.stderr
    return out


def test_fetch_yields_a_crd_for_every_custom_kind_the_suite_writes(fetched):
    kinds = set()
    for path in fetched.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] == "CustomResourceDefinition", path
            kinds.add(f"{doc['spec']['names']['kind']}.{doc['spec']['group']}")
    written = {"Task.tekton.dev", "Pipeline.tekton.dev", "PipelineRun.tekton.dev", "EventListener.triggers.tekton.dev",
               "TriggerBinding.triggers.tekton.dev", "TriggerTemplate.triggers.tekton.dev",
               "SriovNetworkNodePolicy.sriovnetwork.openshift.io", "SriovNetwork.sriovnetwork.openshift.io",
               "NetworkAttachmentDefinition.k8s.cni.cncf.io", "MachineConfig.machineconfiguration.openshift.io",
               "MachineConfigPool.machineconfiguration.openshift.io", "Route.route.openshift.io",
               "SecurityContextConstraints.security.openshift.io", "PerformanceProfile.performance.openshift.io"}
    assert written <= kinds, written - kinds


def test_a_second_fetch_changes_nothing(fetched):
    before = {p: p.stat().st_mtime_ns for p in fetched.rglob("*")}
    again = fetch(fetched)
    assert again.returncode == 0, again.stderr
    assert "is current" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in fetched.rglob("*")} == before


def copy_pins(tmp_path: Path) -> Path:
    pins = tmp_path / "pins"
    shutil.copytree(PINS, pins)
    return pins


def test_a_zip_that_differs_from_go_sum_is_refused(tmp_path, fetched):
    pins = copy_pins(tmp_path)
    module, version = pinned()[0]
    text = (pins / "go.sum").read_text()
    line = re.search(rf"^{re.escape(module)} {re.escape(version)} h1:(\S)", text, re.MULTILINE)
    assert line
    flipped = "A" if line.group(1) != "A" else "B"
    (pins / "go.sum").write_text(text[:line.start(1)] + flipped + text[line.end(1):])
    result = fetch(tmp_path / "out", pins)
    assert result.returncode == 1
    assert f"could not download {module}@{version}" in result.stderr
    assert "checksum mismatch" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_glob_that_matches_nothing_names_the_module(tmp_path, fetched):
    pins = copy_pins(tmp_path)
    text = (pins / "go.mod").read_text().replace("config/300-crds/*.yaml", "config/300-crds/*.yml", 1)
    (pins / "go.mod").write_text(text)
    result = fetch(tmp_path / "out", pins)
    assert result.returncode == 1
    assert "github.com/tektoncd/pipeline: no file matches `config/300-crds/*.yml`" in result.stderr
