"""The README's params reference is generated from pipelines/ and tasks/ by scripts/gen-params-reference,
and stays in step with them: a stale section fails with the diff and the command that regenerates it.

Also covers the script's helpers for settings.yaml: `--settings-pair` prints a pair that the install
accepts, for any Pipeline param.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from test_kustomize import copy_install

from install import find, render

from lintsupport import REPO

SCRIPT = REPO / "scripts" / "gen-params-reference"
BEGIN, END = "<!-- params:begin", "<!-- params:end -->"


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def section(text: str) -> str:
    return text[text.index(BEGIN):text.index(END)]


def test_the_readme_params_reference_is_up_to_date():
    run = script("--check")
    assert run.returncode == 0, run.stdout + run.stderr


def test_it_lists_every_param_of_the_pipeline_and_of_every_task():
    text = section((REPO / "README.md").read_text())
    docs = [yaml.safe_load((REPO / "pipelines" / "cssr-deploy.yaml").read_text())]
    docs += [yaml.safe_load(p.read_text()) for p in sorted((REPO / "tasks").glob("*.yaml"))]
    for doc in docs:
        if doc["kind"] == "Task":
            assert f"<code>{doc['metadata']['name']}</code>" in text
        for param in doc["spec"].get("params") or []:
            assert f"| `{param['name']}` |" in text, f"{doc['metadata']['name']}: {param['name']}"


def test_a_stale_section_fails_with_the_diff_and_the_command(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text().replace("| `pool` | `worker` |", "| `pool` | `master` |", 1))
    run = script("--check", "--readme", str(readme))
    assert run.returncode == 1
    assert "-| `pool` | `master` |" in run.stdout and "+| `pool` | `worker` |" in run.stdout
    assert "out of date: run scripts/gen-params-reference" in run.stdout
    assert script("--readme", str(readme)).returncode == 0  # regenerating fixes it
    assert readme.read_text() == (REPO / "README.md").read_text()


def test_a_readme_without_the_markers_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# nothing here\n")
    run = script("--check", "--readme", str(readme))
    assert run.returncode != 0
    assert "no section between" in run.stderr


def test_a_settings_pair_printed_for_a_param_sets_its_default(tmp_path: Path):
    copy_install(tmp_path)
    pair = script("--settings-pair", "smoke-test-timeout").stdout
    assert pair.count("\n") == 2
    settings = tmp_path / "settings.yaml"
    settings.write_text(settings.read_text() + pair.replace('value: "300"', 'value: "900"'))
    pipeline = find(render(tmp_path), "Pipeline", "cssr-deploy")
    assert {p["name"]: p.get("default") for p in pipeline["spec"]["params"]}["smoke-test-timeout"] == "900"
    assert script("--settings-pair", "no-such-param").returncode != 0
